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

This module owns the records, which key has which type and default, where each layer is
read from and which wins. How one raw value is parsed and checked (durations, modes,
URLs, paths and ``~``, tokens) is `config_types`'s; `parse_duration` is re-exported here.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, cast

from secret_agent import config_types
from secret_agent.config_types import MAX_DURATION, Parser, Where, parse_duration
from secret_agent.dirwalk import not_private
from secret_agent.errors import ConfigError
from secret_agent.model import EnvFormat, SourceKind
from secret_agent.redact import Secret

__all__ = [
    "DEFAULTS",
    "MAX_CONFIG_BYTES",
    "MAX_DURATION",
    "MAX_TOKEN_BYTES",
    "CoderConfig",
    "Config",
    "EnvFileConfig",
    "LogConfig",
    "SyncConfig",
    "ValuesConfig",
    "default_config_path",
    "load_config",
    "parse_duration",
]

MAX_TOKEN_BYTES: Final = 64 * 1024
MAX_CONFIG_BYTES: Final = 1024 * 1024


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
    login_dir: str = ""  # the Coder CLI's config dir (`coder login`'s url and session)

    def in_clear(self) -> tuple[str, ...]:
        """The configured URLs that carry a token over plain http to a non-loopback
        host (README "Where values rest": one warning at start)."""
        urls = [self.url] if self.token is not None and self.url else []
        if self.agent_token is not None:
            urls.append(self.agent_url or self.url)
        return tuple(u for u in dict.fromkeys(urls) if config_types.crosses_network_in_clear(u))


@dataclass(frozen=True, slots=True, kw_only=True)
class ValuesConfig:
    """Where secret values come from (README `values.source`: auto | inline | agent)."""

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
    existing_files: str = "backup"  # backup | refuse | replace: a target we did not write


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
    config_path: str = ""  # the config file read, or the one that would be if it existed


@dataclass(frozen=True, slots=True)
class _Setting:
    """One validated value in the layering, with where it came from."""

    value: object
    where: Where
    layer: str  # one of _LAYERS


_LAYERS: Final = ("default", "login", "file", "env", "flag")


# Every key, its default (raw TOML, parsed like the file) and its validator: the one
# place defaults are written. The example file is tested against DEFAULTS.
_KEYS: Final[Mapping[str, tuple[object, Parser]]] = {
    "coder.url": ("", config_types.url),
    "coder.token_file": ("~/.config/coderv2/session", config_types.path(allow_empty=True)),
    "coder.user": ("me", config_types.user),
    "coder.timeout": ("10s", config_types.positive_duration),
    "coder.ca_file": ("", config_types.path(allow_empty=True)),
    "values.source": ("auto", config_types.enum(tuple(SourceKind), SourceKind)),
    "sync.interval": ("30s", config_types.positive_duration),
    "sync.jitter": (0.1, config_types.jitter),
    "sync.backoff_initial": ("1s", config_types.positive_duration),
    "sync.backoff_max": ("60s", config_types.positive_duration),
    "sync.home": ("~", config_types.path(allow_empty=False)),
    "sync.allowed_roots": (("~",), config_types.roots),
    "sync.file_mode": ("0600", config_types.mode(directory=False)),
    "sync.dir_mode": ("0700", config_types.mode(directory=True)),
    "sync.prune": (True, config_types.boolean),
    "sync.state_dir": ("~/.local/state/secret-agent", config_types.path(allow_empty=False)),
    "sync.existing_files": ("backup", config_types.enum(("backup", "refuse", "replace"))),
    "env_file.path": ("~/.config/secret-agent/secrets.env", config_types.path(allow_empty=True)),
    "env_file.format": ("posix", config_types.enum(tuple(EnvFormat), EnvFormat)),
    "env_file.allow_reserved": ((), config_types.allow_reserved),
    "log.level": ("info", config_types.enum(("debug", "info", "warning", "error"))),
    "log.format": ("auto", config_types.enum(("auto", "console", "json"))),
}
DEFAULTS: Final[Mapping[str, object]] = MappingProxyType({k: d for k, (d, _) in _KEYS.items()})
# Values that mean "the Coder CLI's own", so a copied example file hides nothing.
_FALL_THROUGH: Final = {"coder.url": "", "coder.token_file": DEFAULTS["coder.token_file"]}
_SECTIONS: Final = tuple(dict.fromkeys(k.split(".")[0] for k in _KEYS))


def _unknown(key: str, file: str | None, what: str = "key") -> ConfigError:
    leaf = key.rsplit(".", maxsplit=1)[-1]
    same_leaf = [k for k in _KEYS if k.endswith(f".{leaf}")]
    import difflib  # only on the error path: exec's fast path never pays for it

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
    checked = config_types.path(allow_empty=False)(configured, Where("CODER_CONFIG_DIR", None))
    return config_types.expand(cast(str, checked), home)


def _read_small(path: str, *, limit: int, key: str | None, private: bool = False) -> str | None:
    """The text of a small file, or None if it does not exist; no content in errors.

    `private` (a token file): refuse it, as ssh does a private key, unless it is owned
    by the current user and has no group or other permission bit. Root included.
    """
    try:
        with open(path, "rb") as fp:
            if private:
                _check_private(os.fstat(fp.fileno()), path, key)
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


def _check_private(st: os.stat_result, path: str, key: str | None) -> None:
    """Refuse a token file others may read or replace, naming the command that fixes it."""
    found = not_private(st, mode="600")
    if found is None:
        return
    problem, fix = found
    import shlex  # only on the error path: exec's fast path never pays for it

    raise ConfigError(
        f"the token file {problem}; run `{fix} {shlex.quote(path)}`", key=key, file=path
    )


def _read_toml(path: str, *, explicit: bool) -> dict[str, object] | None:
    text = _read_small(path, limit=MAX_CONFIG_BYTES, key=None)
    if text is None:
        if explicit:
            raise ConfigError("config file not found", file=path)
        return None
    import tomllib  # only when a file exists: many users have none, and exec pays per launch

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


def _layer(merged: dict[str, _Setting], raw: Mapping[str, object], where: Where, name: str) -> None:
    """Validate `raw` (dotted keys) and lay it over `merged`."""
    for key, value in raw.items():
        if key not in _KEYS:
            raise _unknown(key, where.file)
        at = Where(where.key or key, where.file, where.text)
        parsed = _KEYS[key][1](value, at)
        if name != "default" and _FALL_THROUGH.get(key) == parsed:
            continue  # "not set here": the `coder login` layer below still counts
        merged[key] = _Setting(parsed, at, name)


def _session_token(
    setting: _Setting, env: Mapping[str, str], home: str, login: str
) -> tuple[Secret | None, str]:
    """The session token and the file it came from ("" for the environment or none)."""
    if env.get("CODER_SESSION_TOKEN", "").strip():
        variable = "CODER_SESSION_TOKEN"
        return config_types.token(env[variable], key=variable, file=None), ""
    token_file = config_types.expand(cast(str, setting.value), home)
    if not token_file:
        return None, ""
    text = _read_small(token_file, limit=MAX_TOKEN_BYTES, key="coder.token_file", private=True)
    if text is None and setting.layer not in ("default", "login") and token_file != login:
        raise setting.where.error(f"token file {token_file} not found")
    return config_types.token(text or "", key="coder.token_file", file=token_file), token_file


def _build(
    merged: Mapping[str, _Setting], env: Mapping[str, str], home: str, login: str
) -> dict[str, Any]:
    """Flat dotted-key values, expanded and cross-checked, plus the tokens."""
    v: dict[str, Any] = {key: s.value for key, s in merged.items()}
    for key in ("coder.ca_file", "sync.home", "sync.state_dir", "env_file.path"):
        v[key] = config_types.expand(v[key], home)  # "~" is the process's home...
    roots = (config_types.expand(r, v["sync.home"]) for r in v["sync.allowed_roots"])
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
    v["coder.agent_url"] = config_types.url(
        env.get("CODER_AGENT_URL", ""), Where("CODER_AGENT_URL", None)
    )
    agent = env.get("CODER_AGENT_TOKEN", "")
    v["coder.agent_token"] = config_types.token(agent, key="CODER_AGENT_TOKEN", file=None)
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
            missing or oversized token file, or one that is not the user's alone (the
            message names the `chmod 600` that fixes it). Never holds a token.
    """
    home = _home(env)
    merged: dict[str, _Setting] = {}
    _layer(merged, DEFAULTS, Where("", None), "default")

    coder_dir = _coder_dir(env, home)
    login_session = os.path.join(coder_dir, "session")
    url_file = os.path.join(coder_dir, "url")
    login_url = _read_small(url_file, limit=MAX_CONFIG_BYTES, key="coder.url")
    _layer(merged, {"coder.url": (login_url or "").strip()}, Where("", url_file), "login")
    _layer(merged, {"coder.token_file": login_session}, Where("", None), "login")

    explicit = path if path is not None else env.get("SECRET_AGENT_CONFIG") or None
    source = os.path.abspath(explicit) if explicit is not None else default_config_path(env)
    doc = _read_toml(source, explicit=explicit is not None)
    if doc is not None:
        _layer(merged, doc, Where("", source), "file")

    if "CODER_URL" in env:
        _layer(merged, {"coder.url": env["CODER_URL"]}, Where("CODER_URL", None, True), "env")
    _layer(merged, overrides or {}, Where("", None, text=True), "flag")

    v = _build(merged, env, home, login_session)
    v["coder.login_dir"] = coder_dir

    def section(name: str) -> dict[str, Any]:
        return {k.partition(".")[2]: x for k, x in v.items() if k.startswith(f"{name}.")}

    return Config(
        coder=CoderConfig(**section("coder")),
        values=ValuesConfig(**section("values")),
        sync=SyncConfig(**section("sync")),
        env_file=EnvFileConfig(**section("env_file")),
        log=LogConfig(**section("log")),
        source_file=source if doc is not None else "",
        config_path=source,
    )
