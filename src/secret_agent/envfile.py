r"""The generated env file: how each format writes a value, and which values it cannot.

Every format names its readers and is exact for them: what a reader gets back is byte
for byte the value, or the variable is refused with an error that names the secret, the
variable and the reason (never the value). A refused variable never stops the others.
`render_env` is pure: it returns the whole file text (as a `Secret`), the names written
and the refusals; `files` writes it. Entries are written sorted by name, one header
comment first (none in json), ``\n`` line ends, so unchanged secrets give identical
bytes and nothing is rewritten.

Names (all formats)
-------------------
The rules are `envname`'s (a POSIX name of at most 256 bytes, not reserved by Coder
unless ``allow_reserved`` lifts it; posix also refuses the names bash owns); this module
applies them and re-exports `validate_env_name`, `RESERVED_NAMES`, `RESERVED_PREFIXES`
and `SHELL_SPECIAL_NAMES`. Two entries with one name: the first in input order is
written, the others are refused (`DuplicateTargetError`).

Values (all formats)
--------------------
NUL is refused everywhere (no environment can hold it), and so is text that is not valid
UTF-8 (lone surrogates). Every format but json also refuses a ``NAME=value`` longer than
131071 bytes: Linux's MAX_ARG_STRLEN (128 KiB with the NUL) makes every execve that
carries it fail with E2BIG.

``posix`` (default): sh, dash, bash, zsh (``set -a; . FILE``) and systemd
--------------------------------------------------------------------------
* A value without ``'`` is written ``NAME='value'``: nothing inside single quotes is
  special to a shell (``$``, backticks, backslashes, newlines, CR are all literal), and
  systemd's ``EnvironmentFile=`` parser also takes single-quoted text verbatim.
* A value with ``'`` is written ``NAME="value"`` with exactly four characters preceded
  by a backslash: ``\``, ``"``, ``$`` and the backtick; every other character, newlines
  included, is literal. Inside double quotes POSIX shells treat those four as the only
  escapes (backslash-newline aside, which is never written), and systemd's parser
  unescapes exactly these four too (``SHELL_NEED_ESCAPE``; older systemd releases dropped
  the backslash before *any* character, which gives the same result for these four).
* Why not the usual ``'it'\''s'``: systemd does not concatenate that way. After a
  closing ``'`` its parser goes back to "before value", reads ``\'`` as a literal quote
  and then stays in *unquoted* mode, where the next ``'`` is literal and a newline ends
  the assignment. So ``'it'\''s'`` reads back as ``it''s'`` and a value such as
  ``x'<newline>EVIL=1`` would define ``EVIL`` under systemd. (Checked against
  ``load_env_file`` of libsystemd-shared 252; the unit tests call it through ctypes.)
  The double-quoted form is exact for both, so posix is exact for shells *and* systemd
  for every value without NUL.
* History expansion (``!``) never applies to sourced files, so ``!`` needs no quoting.
* Names that bash itself owns (read-only or set by the shell, such as ``UID`` or
  ``RANDOM``) cannot be set by sourcing and are refused in posix only
  (`envname.SHELL_SPECIAL_NAMES`, which says how the list was measured).

``dotenv``: python-dotenv (``dotenv_values``, interpolation on) and docker compose
----------------------------------------------------------------------------------
The two parsers share little. What each does with a quoted value:

* python-dotenv 1.2 (``dotenv/parser.py``): ``'...'`` reads ``\\`` as ``\`` and ``\'``
  as ``'``, any other ``\x`` stays; ``"..."`` also decodes ``\" \n \r \t \a \b
  \f \v``; a backslash always pairs with the next character, so ``\`` right before the
  closing quote escapes it. Afterwards *every* value, single-quoted too, has
  ``${NAME}`` / ``${NAME:-default}`` replaced. The file is opened in text mode, so a raw
  CR (or CRLF) inside quotes is read as a newline. (Releases before 1.2 paired only
  ``\"`` and may misread a double-quoted value that ends in a backslash; not verified.)
* compose-go v2 (``dotenv/parser.go`` as of v2.13, ``template/template.go``):
  ``'...'`` is literal except that ``\'`` is a quote and a backslash is kept but pairs
  with the next character (``\\`` stays ``\\``; ``\`` before the closing quote
  escapes it); ``"..."`` turns ``\"`` into ``"``, then decodes ``\n \r \t \\ \$``
  (and ``\a \b \f \v \0NNN``), then interpolates: ``$$`` is ``$``, ``$NAME`` and
  ``${...}`` are substituted, and any other ``$`` is an "Invalid template" error that
  fails the whole file. Unquoted values are trimmed, cut at ``" #"`` and interpolated.
  Not run here (no Go toolchain): read from the source and checked through a port in
  the tests. Older compose-go releases trimmed quote characters and did not unescape
  ``\'``; they are not a target.

So each value gets the first form that is exact for both:

1. ``'value'`` when the value has no ``'``, no newline or CR, no ``\\``, and does not
   end in ``\`` (both read the text back verbatim, ``$`` included);
2. ``"value"`` with ``\`` -> ``\\``, ``"`` -> ``\"``, newline -> ``\n``, CR ->
   ``\r``, when the value has no ``$`` (compose interpolates ``$`` in double quotes and
   python-dotenv keeps ``\$`` as two characters, so no ``$`` survives both);
3. ``'value'`` with ``'`` -> ``\'`` and newlines kept raw, when the value has ``$``
   (and ``'`` or a newline) but no CR, ``\\``, ``\'`` and no trailing ``\``;

(Form 2 is preferred for newlines so that a value stays on one line wherever it can:
a naive line-based reader then cannot mistake part of it for another variable.)

and everything else is refused: a value holding ``${...}`` (python-dotenv expands it in
any quoting), or a ``$`` together with a CR, ``\\``, ``\'`` or a trailing backslash.

``systemd``: ``EnvironmentFile=`` only
-------------------------------------
``NAME="value"`` with ``\`` -> ``\\`` and ``"`` -> ``\"``; everything else literal,
newlines and CR included (systemd reads the file in binary and keeps raw newlines inside
quotes; ``$`` and backticks are never expanded in ``EnvironmentFile=``). Exact for every
value without NUL on systemd 252 (checked through libsystemd-shared). systemd before
v243 or so also dropped values holding control characters other than tab and newline
(``env_value_is_valid``); such a value is then missing, never misread.

``docker``: ``docker run --env-file``
------------------------------------
``NAME=value``, no quoting at all: docker/cli's ``parseKeyValueFile`` splits lines with
``bufio.Scanner`` (at ``\n``, dropping one CR before it), trims the left of the line
(the name, here) and passes everything after the first ``=`` through untouched, quotes
and ``#`` included. Refused: newline and CR (they end or truncate the line), and a line
of 64 KiB or more (the scanner's limit, which would fail the whole file). Checked with
the docker CLI 28 against a stub daemon in the tests.

``json``: one object
--------------------
``{"NAME": "value", ...}``: sorted keys, ``ensure_ascii=False``, one line, then a
newline. Everything but NUL and non-UTF-8 text round-trips.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from secret_agent.envname import (
    RESERVED_NAMES,
    RESERVED_PREFIXES,
    SHELL_SPECIAL_NAMES,
    validate_env_name,
    validate_shell_name,
)
from secret_agent.errors import (
    DuplicateTargetError,
    SecretRefusedError,
    UnrepresentableValueError,
)
from secret_agent.exec.child_env import MAX_ARG_STRLEN
from secret_agent.model import EnvFormat
from secret_agent.redact import Secret

__all__ = [
    "HEADER",
    "RESERVED_NAMES",
    "RESERVED_PREFIXES",
    "SHELL_SPECIAL_NAMES",
    "EnvEntry",
    "RenderedEnv",
    "check_value",
    "render_env",
    "validate_env_name",
]

HEADER: Final = "# Generated by secret-agent; do not edit.\n"

# Linux's MAX_ARG_STRLEN: one home for the number, in `exec.child_env` (exec's own check).
_MAX_ENV_STRING: Final = MAX_ARG_STRLEN
# bufio.MaxScanTokenSize: a line must fit, with its newline, in 64 KiB.
_DOCKER_MAX_LINE: Final = 64 * 1024 - 1

# python-dotenv's `_posix_variable` (dotenv/variables.py): what it interpolates in every
# value, whatever the quoting.
_DOTENV_INTERPOLATION_RE: Final = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")
_POSIX_DOUBLE_QUOTE_SPECIAL_RE: Final = re.compile(r'([\\"$`])')


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvEntry:
    """One variable to write: which secret it comes from, its name and its value."""

    secret: str
    """The secret's name, for error messages."""
    name: str
    """The env_name."""
    value: Secret
    """The value; `.reveal()` gives the text."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedEnv:
    """The rendered file and what went into it."""

    content: Secret
    """The whole file text; it holds values, so it is a `Secret`."""
    variables: tuple[str, ...]
    """The names written, in file order (sorted)."""
    refused: tuple[SecretRefusedError, ...]
    """One error per refused entry, in input order."""


def check_value(value: Secret, fmt: EnvFormat, *, secret: str, name: str) -> None:
    """Check that `fmt` can carry `value` exactly for every reader it names.

    Args:
        value: the value.
        fmt: the env-file format.
        secret: the secret's name, for the error.
        name: the variable's name, for the error (and the docker line length).

    Raises:
        UnrepresentableValueError: the value holds NUL or is not UTF-8 text (any format),
            makes ``NAME=value`` longer than an environment string can be (all but json),
            or holds something `fmt` cannot carry: for docker a newline or CR, or a line
            of 64 KiB or more; for dotenv ``${...}``, or ``$`` together with a CR, two
            backslashes in a row, a backslash before ``'``, or a trailing backslash.
            The reason describes the problem and never quotes the value.
    """
    _render_value(value.reveal(), fmt, secret=secret, name=name)


def render_env(
    entries: Sequence[EnvEntry], fmt: EnvFormat, *, allow_reserved: Collection[str] = ()
) -> RenderedEnv:
    """Render the env file for `entries` in format `fmt`.

    Each entry is checked in input order: its name (`validate_env_name`, plus
    `SHELL_SPECIAL_NAMES` for posix), then whether an earlier entry with a valid name
    already claimed it, then its value (`check_value`). A refused entry is reported in
    `RenderedEnv.refused` and left out; the others are written sorted by name.

    Args:
        entries: the variables, in the order that decides duplicates (first one wins).
        fmt: the env-file format.
        allow_reserved: exact names or ``PREFIX*`` patterns lifting Coder's reserved rule.

    Returns:
        The file text (deterministic for the same entries), the names written and the
        refusals (`EnvNameRefusedError`, `DuplicateTargetError`,
        `UnrepresentableValueError`).

    Raises:
        TypeError: `allow_reserved` is a single string.
    """
    if isinstance(allow_reserved, str):
        raise TypeError("allow_reserved must be a collection of names, not a string")
    claimed: dict[str, str] = {}
    accepted: dict[str, str] = {}
    refused: list[SecretRefusedError] = []
    for entry in entries:
        try:
            validate_env_name(entry.name, secret=entry.secret, allow_reserved=allow_reserved)
            if fmt is EnvFormat.POSIX:
                validate_shell_name(entry.name, secret=entry.secret)
            first = claimed.get(entry.name)
            if first is not None:
                raise DuplicateTargetError(
                    f"env_name {entry.name!r} is already used by secret {first!r}",
                    secret=entry.secret,
                )
            claimed[entry.name] = entry.secret
            accepted[entry.name] = _render_value(
                entry.value.reveal(), fmt, secret=entry.secret, name=entry.name
            )
        except SecretRefusedError as exc:
            refused.append(exc)
    names = tuple(sorted(accepted))
    if fmt is EnvFormat.JSON:
        text = _render_json((name, accepted[name]) for name in names)
    else:
        text = HEADER + "".join(f"{name}={accepted[name]}\n" for name in names)
    return RenderedEnv(content=Secret(text), variables=names, refused=tuple(refused))


# --- private -------------------------------------------------------------------------


def _render_value(value: str, fmt: EnvFormat, *, secret: str, name: str) -> str:
    """The text after ``NAME=`` for `fmt` (for json: the value itself, checked).

    Raises:
        UnrepresentableValueError: see `check_value`.
    """

    def refuse(reason: str) -> UnrepresentableValueError:
        return UnrepresentableValueError(f"value of {name} {reason}", secret=secret)

    if "\x00" in value:
        raise refuse("contains a NUL byte, which no env file or environment can carry")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise refuse("is not valid UTF-8 text (it holds a lone surrogate)") from None
    if fmt is EnvFormat.JSON:
        return value
    if len(name) + 1 + size > _MAX_ENV_STRING:
        raise refuse(
            f"makes {name}=... longer than {_MAX_ENV_STRING} bytes, more than Linux lets"
            " one environment variable be (MAX_ARG_STRLEN)"
        )
    if fmt is EnvFormat.POSIX:
        return _render_posix(value)
    if fmt is EnvFormat.SYSTEMD:
        return _render_systemd(value)
    if fmt is EnvFormat.DOTENV:
        return _render_dotenv(value, refuse)
    if "\n" in value:
        raise refuse("contains a newline, which docker --env-file cannot represent")
    if "\r" in value:
        raise refuse("contains a carriage return, which docker --env-file cannot represent")
    if len(name) + 1 + size > _DOCKER_MAX_LINE:
        raise refuse(
            f"makes the line {name}=... longer than {_DOCKER_MAX_LINE} bytes, which"
            " docker --env-file cannot read (it would fail the whole file)"
        )
    return value


_Refuse = Callable[[str], UnrepresentableValueError]


def _render_posix(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    return '"' + _POSIX_DOUBLE_QUOTE_SPECIAL_RE.sub(r"\\\1", value) + '"'


def _render_systemd(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_dotenv(value: str, refuse: _Refuse) -> str:
    if _DOTENV_INTERPOLATION_RE.search(value):
        raise refuse(
            "contains ${...}, which python-dotenv expands whatever the quoting",
        )
    # Why single quotes cannot carry it (both parsers), or None if they can.
    single_obstacle = _single_quote_obstacle(value)
    if single_obstacle is None and "'" not in value and "\n" not in value:
        return f"'{value}'"
    if "$" not in value:
        escaped = (
            value.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
        return f'"{escaped}"'
    if single_obstacle is None:
        return "'" + value.replace("'", "\\'") + "'"
    raise refuse(
        f"contains '$' (which docker compose expands inside double quotes) and"
        f" {single_obstacle}; python-dotenv and docker compose have no common quoting"
        " for it"
    )


def _single_quote_obstacle(value: str) -> str | None:
    """Why `value` cannot be single-quoted for python-dotenv and compose; None if it can."""
    if "\r" in value:
        return "a carriage return (python-dotenv reads it as a newline inside single quotes)"
    if "\\\\" in value:
        return "two backslashes in a row (python-dotenv reads them as one, compose as two)"
    if "\\'" in value:
        return "a backslash before a single quote (no escaping of it is read the same)"
    if value.endswith("\\"):
        return "a trailing backslash (it would escape the closing quote)"
    return None


def _render_json(items: Iterable[tuple[str, str]]) -> str:
    return json.dumps(dict(items), ensure_ascii=False, sort_keys=True) + "\n"
