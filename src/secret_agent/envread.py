"""Reading the env file back: the exact inverse of `envfile.render_env`.

Why it exists: no value rests in `state_dir` (docs/where-values-rest.md), so a
new process that needs the values it wrote earlier (a `run --once` rewriting the env
file after one rotation, an offline `exec`) reads them back from where the user asked
for them. It reads only text that `render_env` wrote: the caller checks the file's
sha256 against the ledger first, so this is a parser for our own five forms, not for
what a person might type (no comments but the header, no `export`, no blank lines).

Pure and small on purpose: `exec`'s fast path imports it.
"""

from __future__ import annotations

import json

from secret_agent.envfile import HEADER
from secret_agent.model import EnvFormat

__all__ = ["EnvReadError", "parse_env"]


class EnvReadError(ValueError):
    """The text is not an env file `render_env` wrote in that format (never quotes it)."""


def parse_env(text: str, fmt: EnvFormat) -> dict[str, str]:
    """The variables of an env file rendered in `fmt`, name -> value.

    Raises:
        EnvReadError: the text is not what `render_env` writes for `fmt`; the message
            gives the offset, never the text.
    """
    if fmt is EnvFormat.JSON:
        try:
            doc = json.loads(text)
        except ValueError:
            raise EnvReadError("not a JSON env file") from None
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise EnvReadError("not a JSON object of strings")
        return {str(k): v for k, v in doc.items()}
    if not text.startswith(HEADER):
        raise EnvReadError("no secret-agent header")
    read = _READERS[fmt]
    found: dict[str, str] = {}
    at = len(HEADER)
    while at < len(text):
        eq = text.find("=", at)
        if eq < 0:
            raise EnvReadError(f"no '=' after offset {at}")
        name = text[at:eq]
        value, at = read(text, eq + 1)
        if text[at : at + 1] != "\n":
            raise EnvReadError(f"no newline after the value of {name}")
        found[name] = value
        at += 1
    return found


def _closing(text: str, at: int, quote: str) -> int:
    end = text.find(quote, at)
    if end < 0:
        raise EnvReadError(f"unterminated {quote} at offset {at}")
    return end


def _posix(text: str, at: int) -> tuple[str, int]:
    if text[at : at + 1] == "'":
        end = _closing(text, at + 1, "'")
        return text[at + 1 : end], end + 1
    return _escaped(text, at, escapes={"\\": "\\", '"': '"', "$": "$", "`": "`"})


def _systemd(text: str, at: int) -> tuple[str, int]:
    return _escaped(text, at, escapes={"\\": "\\", '"': '"'})


def _dotenv(text: str, at: int) -> tuple[str, int]:
    if text[at : at + 1] == '"':
        return _escaped(text, at, escapes={"\\": "\\", '"': '"', "n": "\n", "r": "\r"})
    if text[at : at + 1] != "'":
        raise EnvReadError(f"no opening quote at offset {at}")
    # Forms 1 and 3: `\'` is a quote; any other backslash is literal (envfile's rules
    # exclude `\\`, a backslash before the closing quote, and `\'` in the value).
    out: list[str] = []
    i = at + 1
    while True:
        j = _closing(text, i, "'")
        if j > i and text[j - 1] == "\\":
            out.append(text[i : j - 1] + "'")
            i = j + 1
            continue
        out.append(text[i:j])
        return "".join(out), j + 1


def _docker(text: str, at: int) -> tuple[str, int]:
    end = _closing(text, at, "\n")
    return text[at:end], end


def _escaped(text: str, at: int, *, escapes: dict[str, str]) -> tuple[str, int]:
    """A double-quoted value where a backslash escapes exactly the keys of `escapes`."""
    if text[at : at + 1] != '"':
        raise EnvReadError(f"no opening quote at offset {at}")
    out: list[str] = []
    i = at + 1
    while True:
        quote = _closing(text, i, '"')
        slash = text.find("\\", i, quote)
        if slash < 0:
            out.append(text[i:quote])
            return "".join(out), quote + 1
        out.append(text[i:slash])
        char = text[slash + 1 : slash + 2]
        if char not in escapes:
            raise EnvReadError(f"an unknown escape at offset {slash}")
        out.append(escapes[char])
        i = slash + 2


_READERS = {
    EnvFormat.POSIX: _posix,
    EnvFormat.SYSTEMD: _systemd,
    EnvFormat.DOTENV: _dotenv,
    EnvFormat.DOCKER: _docker,
}
