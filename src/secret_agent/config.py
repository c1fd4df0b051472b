"""Configuration: every default, and the one place the environment is read.

Sources are layered, lowest to highest, and each value is validated where it enters, so
an error names the key (or variable) and the file it came from:

1. `DEFAULTS` (below: the only place defaults are written; `config.example.toml` is
   tested against them);
2. the `coder login` files in the Coder CLI config dir (`CODER_CONFIG_DIR`, else
   `$XDG_CONFIG_HOME/coderv2`, else `~/.config/coderv2`): `url` gives `coder.url`, and
   `session` is the default `coder.token_file`;
3. the TOML config file (`path`, else `SECRET_AGENT_CONFIG`, else `default_config_path`);
4. the environment: `CODER_URL`; `CODER_SESSION_TOKEN` beats any token file; and
   `CODER_AGENT_URL` / `CODER_AGENT_TOKEN`, which only the environment sets;
5. `overrides` (the CLI flags), keyed by dotted TOML key.

An empty `coder.url`, or `coder.token_file` spelled as its default, means "not set
here" in any layer, so a copied example file does not hide what `coder login` wrote
(wherever `CODER_CONFIG_DIR` puts it). The environment is a `Mapping` parameter: this module
never reads `os.environ`. It does no HTTP and knows no secret values beyond the Coder
tokens, which become `Secret`s and are registered with `redact.known_values` at once.
"""

from __future__ import annotations

import difflib
import math
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, cast
from urllib.parse import urlsplit

from secret_agent.errors import ConfigError
from secret_agent.model import EnvFormat, SourceKind
from secret_agent.redact import Secret, known_values

MAX_TOKEN_BYTES: Final = 64 * 1024
MAX_CONFIG_BYTES: Final = 1024 * 1024
MAX_DURATION: Final = 30 * 24 * 3600.0  # a sanity cap: longer is surely a typo


@dataclass(frozen=True, slots=True, kw_only=True)
class CoderConfig:
    """Where Coder is and how to authenticate; tokens are `Secret`s, never `str`."""

    url: str  # "" when not configured; no trailing slash
    token: Secret | None  # the resolved session token
    token_file: str  # absolute path the token is read (and watched) from; "" if env or off
    user: str
    timeout: float
    ca_file: str  # absolute, or "" for the system store
    agent_url: str  # CODER_AGENT_URL, "" if unset
    agent_token: Secret | None  # CODER_AGENT_TOKEN


@dataclass(frozen=True, slots=True, kw_only=True)
class ValuesConfig:
    """Where secret values come from (product.md: auto | inline | agent)."""

    source: SourceKind


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    """Polling, retry and file-writing policy; durations in seconds, modes as ints."""

    interval: float
    jitter: float
    backoff_initial: float
    backoff_max: float
    home: str  # absolute: what "~/" in a secret's file_path means
    allowed_roots: tuple[str, ...]  # absolute, normalised
    file_mode: int
    dir_mode: int
    prune: bool
    state_dir: str  # absolute


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvFileConfig:
    """The generated env file."""

    path: str  # absolute, or "" when off
    format: EnvFormat
    allow_reserved: tuple[str, ...]  # env names or "PREFIX_*" Coder reserves but we may write


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """Log level and renderer (`logs.py` applies them)."""

    level: str  # debug | info | warning | error
    format: str  # auto | console | json


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole validated configuration; frozen, and safe to repr or log."""

    coder: CoderConfig
    values: ValuesConfig
    sync: SyncConfig
    env_file: EnvFileConfig
    log: LogConfig
    source_file: str  # the config file read, "" if none


@dataclass(frozen=True, slots=True)
class _Where:
    """Where a raw value came from, for errors; `text` allows "30"/"true" for numbers."""

    key: str  # the dotted key, or the environment variable's name
    file: str | None
    text: bool = False

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, key=self.key, file=self.file)


@dataclass(frozen=True, slots=True)
class _Setting:
    """One validated value in the layering, with where it came from."""

    value: object
    where: _Where
    layer: str  # one of _LAYERS


_LAYERS: Final = ("default", "login", "file", "env", "flag")


_Parser = Callable[[object, "_Where"], object]
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION: Final = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SECONDS: Final = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_USER: Final = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_ENV_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?")
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


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
    where = _Where(key, file)
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


def _string(value: object, where: _Where) -> str:
    if not isinstance(value, str):
        raise where.error(f"must be a string, not {_kind(value)}")
    if "\0" in value:
        raise where.error("must not contain a NUL byte")
    return value


def _url(value: object, where: _Where) -> str:
    text = _string(value, where).strip()
    if not text:
        return ""
    shown = "" if "@" in text else f" {text!r}"  # userinfo may hold a password
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


def _user(value: object, where: _Where) -> str:
    text = _string(value, where)
    if len(text) > 64 or not _USER.fullmatch(text):
        raise where.error(f"{text!r} is not 'me', a username or a user ID")
    return text


def _positive_duration(value: object, where: _Where) -> float:
    seconds = parse_duration(cast(str, value), key=where.key, file=where.file)
    if seconds <= 0:
        raise where.error(f"duration {value!r} must be greater than zero")
    return seconds


def _jitter(value: object, where: _Where) -> float:
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


def _bool(value: object, where: _Where) -> bool:
    if where.text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if not isinstance(value, bool):
        raise where.error(f"must be true or false, not {_kind(value)}")
    return value


def _mode(directory: bool) -> _Parser:
    def parse(value: object, where: _Where) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        elif isinstance(value, str) and re.fullmatch(r"(?:0o)?[0-7]{1,4}", value.strip()):
            mode = int(value.strip().removeprefix("0o"), 8)
        else:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise where.error(f"mode must be octal digits such as '0600', not {shown}")
        if not 0 <= mode <= 0o777:
            raise where.error(f"mode {value!r} has bits outside 0777")
        if mode & 0o022:
            raise where.error(f"mode {mode:04o} lets group or others write")
        need = 0o700 if directory else 0o400
        if mode & need != need:
            raise where.error(f"mode {mode:04o} must include {need:04o} for the owner")
        return mode

    return parse


def _enum(choices: tuple[str, ...], make: Callable[[str], object] = str) -> _Parser:
    def parse(value: object, where: _Where) -> object:
        text = _string(value, where).strip().lower()
        if text not in choices:
            raise where.error(f"{value!r} is not one of {' | '.join(choices)}")
        return make(text)

    return parse


def _path(allow_empty: bool) -> _Parser:
    def parse(value: object, where: _Where) -> object:
        text = _string(value, where)
        if text == "" and allow_empty:
            return ""
        if where.text and text and not text.startswith("~"):
            return os.path.abspath(text)  # a flag: relative to the working directory
        if not (text == "~" or text.startswith("~/") or os.path.isabs(text)):
            raise where.error(f"path {text!r} must be absolute or start with '~/'")
        return text

    return parse


def _strings(value: object, where: _Where) -> tuple[str, ...]:
    if where.text and isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise where.error(f"must be an array of strings, not {_kind(value)}")
    return tuple(_string(item, where) for item in value)


def _roots(value: object, where: _Where) -> tuple[str, ...]:
    roots = tuple(cast(str, _path(False)(item, where)) for item in _strings(value, where))
    if not roots:
        raise where.error("must name at least one root")
    return roots


def _allow_reserved(value: object, where: _Where) -> tuple[str, ...]:
    names = _strings(value, where)
    for name in names:
        if not _ENV_PATTERN.fullmatch(name):
            raise where.error(f"{name!r} is not an env name or a 'PREFIX_*' pattern")
    return tuple(dict.fromkeys(names))


# Every key, its default (raw TOML, parsed like the file) and its validator: the one
# place defaults are written. The example file is tested against DEFAULTS.
_KEYS: Final[Mapping[str, tuple[object, _Parser]]] = {
    "coder.url": ("", _url),
    "coder.token_file": ("~/.config/coderv2/session", _path(allow_empty=True)),
    "coder.user": ("me", _user),
    "coder.timeout": ("10s", _positive_duration),
    "coder.ca_file": ("", _path(allow_empty=True)),
    "values.source": ("auto", _enum(tuple(SourceKind), SourceKind)),
    "sync.interval": ("30s", _positive_duration),
    "sync.jitter": (0.1, _jitter),
    "sync.backoff_initial": ("1s", _positive_duration),
    "sync.backoff_max": ("60s", _positive_duration),
    "sync.home": ("~", _path(allow_empty=False)),
    "sync.allowed_roots": (("~",), _roots),
    "sync.file_mode": ("0600", _mode(directory=False)),
    "sync.dir_mode": ("0700", _mode(directory=True)),
    "sync.prune": (True, _bool),
    "sync.state_dir": ("~/.local/state/secret-agent", _path(allow_empty=False)),
    "env_file.path": ("~/.config/secret-agent/secrets.env", _path(allow_empty=True)),
    "env_file.format": ("posix", _enum(tuple(EnvFormat), EnvFormat)),
    "env_file.allow_reserved": ((), _allow_reserved),
    "log.level": ("info", _enum(("debug", "info", "warning", "error"))),
    "log.format": ("auto", _enum(("auto", "console", "json"))),
}
DEFAULTS: Final[Mapping[str, object]] = MappingProxyType({k: d for k, (d, _) in _KEYS.items()})
# Values that mean "the Coder CLI's own", so a copied example file hides nothing.
_FALL_THROUGH: Final = {"coder.url": "", "coder.token_file": DEFAULTS["coder.token_file"]}
_SECTIONS: Final = tuple(dict.fromkeys(k.split(".")[0] for k in _KEYS))


def _unknown(key: str, file: str | None, what: str = "key") -> ConfigError:
    leaf = key.rsplit(".", maxsplit=1)[-1]
    same_leaf = [k for k in _KEYS if k.endswith(f".{leaf}")]
    close = difflib.get_close_matches(key, [*_KEYS, *_SECTIONS], n=1, cutoff=0.6)
    hint = (same_leaf or close)[:1]
    suffix = f"; did you mean {hint[0]!r}?" if hint else ""
    return ConfigError(f"unknown {what}{suffix}", key=key, file=file)


def _home(env: Mapping[str, str]) -> str:
    home = env.get("HOME", "")
    if os.path.isabs(home):
        return os.path.normpath(home)
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        raise ConfigError("cannot tell the home directory: set HOME", key="HOME") from None


def _expand(path: str, home: str) -> str:
    if not path:
        return ""
    if path == "~" or path.startswith("~/"):
        path = os.path.join(home, path[2:])
    return os.path.normpath(path)


def _xdg_config_home(env: Mapping[str, str], home: str) -> str:
    xdg = env.get("XDG_CONFIG_HOME", "")
    return xdg if os.path.isabs(xdg) else os.path.join(home, ".config")  # relative: ignored


def default_config_path(env: Mapping[str, str]) -> str:
    """`$XDG_CONFIG_HOME/secret-agent/config.toml`, else `~/.config/secret-agent/...`.

    Raises:
        ConfigError: when no home directory can be found (no HOME, no passwd entry).
    """
    return os.path.join(_xdg_config_home(env, _home(env)), "secret-agent", "config.toml")


def _coder_dir(env: Mapping[str, str], home: str) -> str:
    configured = env.get("CODER_CONFIG_DIR", "")
    if not configured:
        return os.path.join(_xdg_config_home(env, home), "coderv2")
    checked = _path(allow_empty=False)(configured, _Where("CODER_CONFIG_DIR", None))
    return _expand(cast(str, checked), home)


def _read_small(path: str, *, limit: int, key: str | None) -> str | None:
    """The text of a small file, or None if it does not exist; no content in errors."""
    try:
        with open(path, "rb") as fp:
            data = fp.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", key=key, file=path) from None
    if len(data) > limit:
        raise ConfigError(f"file is larger than {limit} bytes", key=key, file=path)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ConfigError("file is not UTF-8 text", key=key, file=path) from None


def _read_toml(path: str, *, explicit: bool) -> dict[str, object] | None:
    text = _read_small(path, limit=MAX_CONFIG_BYTES, key=None)
    if text is None:
        if explicit:
            raise ConfigError("config file not found", file=path)
        return None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=path) from None
    flat: dict[str, object] = {}
    for section, table in doc.items():
        if section not in _SECTIONS:
            raise _unknown(section, path, "table" if isinstance(table, dict) else "key")
        if not isinstance(table, dict):
            raise ConfigError(f"must be a table [{section}]", key=section, file=path)
        for name, value in table.items():
            if f"{section}.{name}" not in _KEYS:
                raise _unknown(f"{section}.{name}", path)
            flat[f"{section}.{name}"] = value
    return flat


def _layer(
    merged: dict[str, _Setting], raw: Mapping[str, object], where: _Where, name: str
) -> None:
    """Validate `raw` (dotted keys) and lay it over `merged`."""
    for key, value in raw.items():
        if key not in _KEYS:
            raise _unknown(key, where.file)
        at = _Where(where.key or key, where.file, where.text)
        parsed = _KEYS[key][1](value, at)
        if name != "default" and _FALL_THROUGH.get(key) == parsed:
            continue  # "not set here": the `coder login` layer below still counts
        merged[key] = _Setting(parsed, at, name)


def _token(text: str, *, key: str, file: str | None) -> Secret | None:
    token = text.strip()
    known_values.add([token])
    if not token:
        return None
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        raise ConfigError("the token holds spaces or characters a token cannot", key=key, file=file)
    return Secret(token)


def _session_token(
    setting: _Setting, env: Mapping[str, str], home: str, login: str
) -> tuple[Secret | None, str]:
    """The session token and the file it came from ("" for the environment or none)."""
    if env.get("CODER_SESSION_TOKEN", "").strip():
        return _token(env["CODER_SESSION_TOKEN"], key="CODER_SESSION_TOKEN", file=None), ""
    token_file = _expand(cast(str, setting.value), home)
    if not token_file:
        return None, ""
    text = _read_small(token_file, limit=MAX_TOKEN_BYTES, key="coder.token_file")
    if text is None and setting.layer not in ("default", "login") and token_file != login:
        raise setting.where.error(f"token file {token_file} not found")
    return _token(text or "", key="coder.token_file", file=token_file), token_file


def _build(
    merged: Mapping[str, _Setting], env: Mapping[str, str], home: str, login: str
) -> dict[str, Any]:
    """Flat dotted-key values, expanded and cross-checked, plus the tokens."""
    v: dict[str, Any] = {key: s.value for key, s in merged.items()}
    for key in ("coder.ca_file", "sync.home", "sync.state_dir", "env_file.path"):
        v[key] = _expand(v[key], home)  # "~" is the process's home...
    roots = (_expand(r, v["sync.home"]) for r in v["sync.allowed_roots"])
    v["sync.allowed_roots"] = tuple(dict.fromkeys(roots))  # ...but sync.home for the roots
    initial, cap = merged["sync.backoff_initial"], merged["sync.backoff_max"]
    if v["sync.backoff_initial"] > v["sync.backoff_max"]:
        # Blame the one set in the higher layer: that is the edit that broke the pair.
        culprit = max(initial, cap, key=lambda s: _LAYERS.index(s.layer))
        raise culprit.where.error(
            f"backoff_initial ({initial.value}s) is longer than backoff_max ({cap.value}s)"
        )
    if v["coder.ca_file"] and not os.path.isfile(v["coder.ca_file"]):
        raise merged["coder.ca_file"].where.error(f"CA file {v['coder.ca_file']} not found")
    v["coder.token"], v["coder.token_file"] = _session_token(
        merged["coder.token_file"], env, home, login
    )
    v["coder.agent_url"] = _url(env.get("CODER_AGENT_URL", ""), _Where("CODER_AGENT_URL", None))
    agent = env.get("CODER_AGENT_TOKEN", "")
    v["coder.agent_token"] = _token(agent, key="CODER_AGENT_TOKEN", file=None)
    return v


def load_config(
    *,
    path: str | None = None,
    env: Mapping[str, str],
    overrides: Mapping[str, str | float | bool | list[str]] | None = None,
) -> Config:
    """Read, layer and validate the configuration (see the module docstring).

    `path` (else `SECRET_AGENT_CONFIG`) names a file that must exist; the default path
    may be missing. `overrides` are the CLI flags, keyed by dotted TOML key.

    Raises:
        ConfigError: naming the key (or variable) and the file, for anything unusable:
            a missing explicit file, bad TOML, unknown keys, wrong types or values, a
            missing or oversized token file. Never holds a token.
    """
    home = _home(env)
    merged: dict[str, _Setting] = {}
    _layer(merged, DEFAULTS, _Where("", None), "default")

    coder_dir = _coder_dir(env, home)
    login_session = os.path.join(coder_dir, "session")
    url_file = os.path.join(coder_dir, "url")
    login_url = _read_small(url_file, limit=MAX_CONFIG_BYTES, key="coder.url")
    _layer(merged, {"coder.url": (login_url or "").strip()}, _Where("", url_file), "login")
    _layer(merged, {"coder.token_file": login_session}, _Where("", None), "login")

    explicit = path if path is not None else env.get("SECRET_AGENT_CONFIG") or None
    source = os.path.abspath(explicit) if explicit is not None else default_config_path(env)
    doc = _read_toml(source, explicit=explicit is not None)
    if doc is not None:
        _layer(merged, doc, _Where("", source), "file")

    if "CODER_URL" in env:
        _layer(merged, {"coder.url": env["CODER_URL"]}, _Where("CODER_URL", None, True), "env")
    _layer(merged, overrides or {}, _Where("", None, text=True), "flag")

    v = _build(merged, env, home, login_session)

    def section(name: str) -> dict[str, Any]:
        return {k.partition(".")[2]: x for k, x in v.items() if k.startswith(f"{name}.")}

    return Config(
        coder=CoderConfig(**section("coder")),
        values=ValuesConfig(**section("values")),
        sync=SyncConfig(**section("sync")),
        env_file=EnvFileConfig(**section("env_file")),
        log=LogConfig(**section("log")),
        source_file=source if doc is not None else "",
    )
