"""Config types: what each configuration key accepts, and how raw input becomes its value.

`config` owns the keys, their defaults and the layering; this module owns the types a
key can have (duration, mode, URL, path, username, env-name pattern, closed choice, …).
Each type is a `Parser`, like an argparse ``type=`` callable: it takes one raw value (a
TOML value, or text from the environment or a flag) and `Where` it came from, and
returns the value `Config` stores (durations as float seconds, modes as `int`, paths
as written) or raises a `ConfigError` naming the key and the file. The factories
(`mode`, `enum`, `path`) return a `Parser`.

It also holds the two conversions `config` applies after layering: `expand` (what
``~`` means) and `token` (a Coder token as a `Secret`, registered with
`redact.known_values` before anything can fail).

Each function looks at one value only: nothing here reads a file, the environment or
the clock, knows which key uses which type, or knows what a default is. An error
message never quotes a token, and quotes a URL only when it holds no userinfo.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from secret_agent.errors import ConfigError
from secret_agent.redact import Secret, known_values

MAX_DURATION: Final = 30 * 24 * 3600.0  # a sanity cap: longer is surely a typo

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION: Final = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SECONDS: Final = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_USER: Final = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_ENV_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?")
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True, slots=True)
class Where:
    """Where a raw value came from, for errors; `text` allows "30"/"true" for numbers."""

    key: str  # the dotted key, or the environment variable's name
    file: str | None
    text: bool = False

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, key=self.key, file=self.file)


Parser = Callable[[object, Where], object]


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    return {**names, list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def parse_duration(text: str | int | float, *, key: str, file: str | None = None) -> float:
    """Seconds from "500ms", "30s", "5m", "1h", "1m30s", "30" or a number of seconds.

    Zero is allowed here (callers that need more say so); negative, NaN, infinite and
    longer than `MAX_DURATION` are not.

    Raises:
        ConfigError: naming `key` and `file`, when `text` is not such a duration.
    """
    where = Where(key, file)
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise where.error(f"must be a duration such as '30s' or a number, not {_kind(text)}")
    seconds: float
    if isinstance(text, str):
        spec = text.strip()
        if spec.startswith("-"):
            raise where.error(f"duration {text!r} must not be negative")
        if _DURATION.fullmatch(spec):
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(spec))
        elif _SECONDS.fullmatch(spec):
            seconds = float(spec)
        else:
            raise where.error(
                f"invalid duration {text!r}; use e.g. '500ms', '30s', '5m', '1h', '1m30s'"
                " or a number of seconds"
            )
    else:
        seconds = float(min(text, MAX_DURATION + 1))  # min: a huge int cannot overflow float
    if not math.isfinite(seconds) or seconds < 0:
        raise where.error(f"duration {text!r} must be a finite number of seconds >= 0")
    if seconds > MAX_DURATION:
        raise where.error(f"duration {text!r} is longer than 30 days")
    return seconds


def string(value: object, where: Where) -> str:
    """A string without NUL."""
    if not isinstance(value, str):
        raise where.error(f"must be a string, not {_kind(value)}")
    if "\0" in value:
        raise where.error("must not contain a NUL byte")
    return value


def url(value: object, where: Where) -> str:
    """``http(s)://host[:port][/path]`` without userinfo, query or fragment; "" if blank.

    The trailing slash is dropped.
    """
    text = string(value, where).strip()
    if not text:
        return ""
    shown = "" if "@" in text else f" {text!r}"  # userinfo may hold a password
    from urllib.parse import urlsplit  # lazily: exec's fast path has no URL to check

    try:
        parts = urlsplit(text)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        raise where.error(f"URL{shown} must be http(s)://host[:port][/path]") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or any(c.isspace() or ord(c) < 32 for c in text)
    ):
        raise where.error(f"URL{shown} must be http(s)://host[:port][/path]")
    return text.rstrip("/")


def crosses_network_in_clear(url_text: str) -> bool:
    """Whether `url_text` is plain http:// to a host that is not loopback, so a token
    sent there crosses the network unencrypted. Names are not resolved: only
    `localhost` and loopback addresses count as loopback."""
    from urllib.parse import urlsplit

    parts = urlsplit(url_text)
    if parts.scheme != "http" or not parts.hostname:
        return False
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return False
    import ipaddress

    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve anywhere


def user(value: object, where: Where) -> str:
    """`me`, a Coder username or a user ID (alphanumeric runs joined by dashes)."""
    text = string(value, where)
    if len(text) > 64 or not _USER.fullmatch(text):
        raise where.error(f"{text!r} is not 'me', a username or a user ID")
    return text


def positive_duration(value: object, where: Where) -> float:
    """A duration (`parse_duration`) longer than zero."""
    seconds = parse_duration(cast(str, value), key=where.key, file=where.file)
    if seconds <= 0:
        raise where.error(f"duration {value!r} must be greater than zero")
    return seconds


def jitter(value: object, where: Where) -> float:
    """A number in [0, 1)."""
    if where.text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise where.error(f"must be a number in [0, 1), not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.error(f"must be a number in [0, 1), not {_kind(value)}")
    if not 0 <= value < 1:  # also false for NaN
        raise where.error(f"must be a number in [0, 1), not {value!r}")
    return float(value)


def boolean(value: object, where: Where) -> bool:
    """A TOML boolean; from text also true/false, yes/no, on/off, 1/0."""
    if where.text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if not isinstance(value, bool):
        raise where.error(f"must be true or false, not {_kind(value)}")
    return value


def mode(directory: bool) -> Parser:
    """Permission bits in octal; never group- or other-writable, always owner-readable.

    A directory's mode must also give the owner 0700.
    """

    def parse(value: object, where: Where) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            bits = value
        elif isinstance(value, str) and re.fullmatch(r"(?:0o)?[0-7]{1,4}", value.strip()):
            bits = int(value.strip().removeprefix("0o"), 8)
        else:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise where.error(f"mode must be octal digits such as '0600', not {shown}")
        if not 0 <= bits <= 0o777:
            raise where.error(f"mode {value!r} has bits outside 0777")
        if bits & 0o022:
            raise where.error(f"mode {bits:04o} lets group or others write")
        need = 0o700 if directory else 0o400
        if bits & need != need:
            raise where.error(f"mode {bits:04o} must include {need:04o} for the owner")
        return bits

    return parse


def enum(choices: tuple[str, ...], make: Callable[[str], object] = str) -> Parser:
    """One of `choices` (case-insensitive), passed through `make`."""

    def parse(value: object, where: Where) -> object:
        text = string(value, where).strip().lower()
        if text not in choices:
            raise where.error(f"{value!r} is not one of {' | '.join(choices)}")
        return make(text)

    return parse


def path(allow_empty: bool) -> Parser:
    """An absolute path or one starting with ``~/`` (kept as written; see `expand`).

    From a flag (`Where.text`), a relative path is taken from the working directory.
    """

    def parse(value: object, where: Where) -> object:
        text = string(value, where)
        if text == "" and allow_empty:
            return ""
        if where.text and text and not text.startswith("~"):
            return os.path.abspath(text)  # a flag: relative to the working directory
        if not (text == "~" or text.startswith("~/") or os.path.isabs(text)):
            raise where.error(f"path {text!r} must be absolute or start with '~/'")
        return text

    return parse


def strings(value: object, where: Where) -> tuple[str, ...]:
    """An array of strings; from text, one string is an array of one."""
    if where.text and isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise where.error(f"must be an array of strings, not {_kind(value)}")
    return tuple(string(item, where) for item in value)


def roots(value: object, where: Where) -> tuple[str, ...]:
    """A non-empty array of paths (`path`, never empty)."""
    found = tuple(cast(str, path(False)(item, where)) for item in strings(value, where))
    if not found:
        raise where.error("must name at least one root")
    return found


def allow_reserved(value: object, where: Where) -> tuple[str, ...]:
    """An array of env names or ``PREFIX_*`` patterns, without duplicates."""
    names = strings(value, where)
    for name in names:
        if not _ENV_PATTERN.fullmatch(name):
            raise where.error(f"{name!r} is not an env name or a 'PREFIX_*' pattern")
    return tuple(dict.fromkeys(names))


def expand(text: str, home: str) -> str:
    """`text` (a `path` value) with a leading ``~`` meaning `home`, normalised; "" stays ""."""
    if not text:
        return ""
    if text == "~" or text.startswith("~/"):
        text = os.path.join(home, text[2:])
    return os.path.normpath(text)


def token(text: str, *, key: str, file: str | None) -> Secret | None:
    """A Coder token from `text` (stripped), or None when blank.

    The text is registered with `redact.known_values` first, so it is scrubbed from
    logs even when refused.

    Raises:
        ConfigError: the token holds a space or a character outside printable ASCII;
            the message never holds the token.
    """
    stripped = text.strip()
    known_values.add([stripped])
    if not stripped:
        return None
    if any(not 0x21 <= ord(c) <= 0x7E for c in stripped):
        raise ConfigError("the token holds spaces or characters a token cannot", key=key, file=file)
    return Secret(stripped)
