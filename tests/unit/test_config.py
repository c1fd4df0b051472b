"""config.py: defaults, layering, validation, and tokens that never leak."""

from __future__ import annotations

import dataclasses
import os
import pwd
import tomllib
from pathlib import Path

import pytest

from secret_agent.config import (
    DEFAULTS,
    CoderConfig,
    Config,
    EnvFileConfig,
    LogConfig,
    SyncConfig,
    ValuesConfig,
    default_config_path,
    load_config,
    parse_duration,
)
from secret_agent.errors import ConfigError
from secret_agent.model import EnvFormat, SourceKind
from secret_agent.redact import REDACTED, Secret, known_values

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
CANARY = "CANARYtok-3f9a1c7e-d41b-4e0f-9a77-5c2b8e6d0f13"
CANARY2 = "CANARYagent-8b2e4d6f0a1c3e5f7a9b"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"HOME": str(home)}


def write(path: Path, text: str) -> str:
    """A file only its owner may read, as `coder login` writes its session file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def expected_defaults(home: Path) -> Config:
    h = str(home)
    return Config(
        coder=CoderConfig(
            url="",
            token=None,
            token_file=f"{h}/.config/coderv2/session",
            user="me",
            timeout=10.0,
            ca_file="",
            agent_url="",
            agent_token=None,
            login_dir=f"{h}/.config/coderv2",
        ),
        values=ValuesConfig(source=SourceKind.AUTO),
        sync=SyncConfig(
            interval=30.0,
            jitter=0.1,
            backoff_initial=1.0,
            backoff_max=60.0,
            home=h,
            allowed_roots=(h,),
            file_mode=0o600,
            dir_mode=0o700,
            prune=True,
            state_dir=f"{h}/.local/state/secret-agent",
        ),
        env_file=EnvFileConfig(
            path=f"{h}/.config/secret-agent/secrets.env",
            format=EnvFormat.POSIX,
            allow_reserved=(),
        ),
        log=LogConfig(level="info", format="auto"),
        source_file="",
    )


# --- defaults and the example file ------------------------------------------------


def test_defaults_with_empty_env(home: Path, env: dict[str, str]) -> None:
    """With only HOME set and no files, every setting is product.md's default."""
    cfg = load_config(env=env)
    assert cfg.config_path == f"{home}/.config/secret-agent/config.toml"
    assert dataclasses.replace(cfg, config_path="") == expected_defaults(home)


def test_home_falls_back_to_passwd(tmp_path: Path) -> None:
    """Without HOME, "~" means the passwd home directory."""
    env = {"CODER_CONFIG_DIR": str(tmp_path / "coder")}  # keep the real ~/.config out
    cfg = load_config(path=write(tmp_path / "c.toml", ""), env=env)
    assert cfg.sync.home == pwd.getpwuid(os.getuid()).pw_dir


def test_example_file_equals_defaults(home: Path, env: dict[str, str]) -> None:
    """Loading config.example.toml gives exactly the defaults written in config.py."""
    cfg = load_config(path=str(EXAMPLE), env=env)
    assert cfg.source_file == str(EXAMPLE)
    assert dataclasses.replace(cfg, source_file="", config_path="") == expected_defaults(home)


def test_example_file_documents_every_key() -> None:
    """config.example.toml sets every key config.py knows, each with a comment line."""
    doc = tomllib.loads(EXAMPLE.read_text())
    keys = {f"{section}.{name}" for section, table in doc.items() for name in table}
    assert keys == set(DEFAULTS)
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), line


def test_copied_example_does_not_hide_coder_login(tmp_path: Path, env: dict[str, str]) -> None:
    """The example's url "" and default token_file defer to `coder login`'s files."""
    coder_dir = tmp_path / "coder"
    write(coder_dir / "url", "https://login.example.com\n")
    write(coder_dir / "session", CANARY + "\n")
    cfg = load_config(path=str(EXAMPLE), env={**env, "CODER_CONFIG_DIR": str(coder_dir)})
    assert cfg.coder.url == "https://login.example.com"
    assert cfg.coder.token == Secret(CANARY)
    assert cfg.coder.token_file == str(coder_dir / "session")


def test_config_is_frozen(env: dict[str, str]) -> None:
    """The loaded config cannot be changed in place."""
    cfg = load_config(env=env)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sync.interval = 1.0  # type: ignore[misc]


# --- every key ---------------------------------------------------------------------

FULL = """
[coder]
url = "https://coder.example.com:8443/base/"
token_file = "~/tokens/coder"
user = "alice-2"
timeout = "2m30s"
ca_file = "~/ca.pem"

[values]
source = "agent"

[sync]
interval = 90
jitter = 0.25
backoff_initial = "500ms"
backoff_max = "5m"
home = "/srv/ws"
allowed_roots = ["~", "~/projects", "/opt/x/../shared", "/srv/ws/"]
file_mode = "0400"
dir_mode = 0o750
prune = false
state_dir = "/var/lib/sa"
existing_files = "refuse"

[env_file]
path = ""
format = "dotenv"
allow_reserved = ["PATH", "LD_*", "PATH"]

[log]
level = "DEBUG"
format = "json"
"""


def test_every_key_is_parsed(tmp_path: Path, home: Path, env: dict[str, str]) -> None:
    """Each key of the file lands, parsed and expanded, in its field."""
    write(home / "tokens" / "coder", f"  {CANARY}\n\n")
    write(home / "ca.pem", "pem")
    path = write(tmp_path / "c.toml", FULL)
    cfg = load_config(path=path, env=env)
    h = str(home)
    assert cfg == Config(
        coder=CoderConfig(
            url="https://coder.example.com:8443/base",
            token=Secret(CANARY),
            token_file=f"{h}/tokens/coder",
            user="alice-2",
            timeout=150.0,
            ca_file=f"{h}/ca.pem",
            agent_url="",
            agent_token=None,
            login_dir=f"{h}/.config/coderv2",
        ),
        values=ValuesConfig(source=SourceKind.AGENT),
        sync=SyncConfig(
            interval=90.0,
            jitter=0.25,
            backoff_initial=0.5,
            backoff_max=300.0,
            home="/srv/ws",
            allowed_roots=("/srv/ws", "/srv/ws/projects", "/opt/shared"),
            file_mode=0o400,
            dir_mode=0o750,
            prune=False,
            state_dir="/var/lib/sa",
            existing_files="refuse",
        ),
        env_file=EnvFileConfig(path="", format=EnvFormat.DOTENV, allow_reserved=("PATH", "LD_*")),
        log=LogConfig(level="debug", format="json"),
        source_file=path,
        config_path=path,
    )


def test_allowed_roots_expand_against_sync_home(tmp_path: Path, env: dict[str, str]) -> None:
    """ "~" in allowed_roots is sync.home, while "~" in state_dir stays the process home."""
    path = write(
        tmp_path / "c.toml",
        '[sync]\nhome = "~/ws"\nallowed_roots = ["~", "~/.config"]\nstate_dir = "~/st"\n',
    )
    cfg = load_config(path=path, env=env)
    assert cfg.sync.home == f"{env['HOME']}/ws"
    assert cfg.sync.allowed_roots == (f"{env['HOME']}/ws", f"{env['HOME']}/ws/.config")
    assert cfg.sync.state_dir == f"{env['HOME']}/st"


# --- durations and modes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("2h45m", 9900.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        (" 30s ", 30.0),
        ("30", 30.0),
        ("0.5", 0.5),
        ("0s", 0.0),
        (30, 30.0),
        (0.25, 0.25),
    ],
    ids=repr,
)
def test_parse_duration_accepts(text: str | float, seconds: float) -> None:
    """Go-style durations, compounds and plain seconds all parse to float seconds."""
    assert parse_duration(text, key="sync.interval") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("5 minutes", id="words"),
        pytest.param("-1s", id="negative"),
        pytest.param("", id="empty"),
        pytest.param("1d", id="days"),
        pytest.param("s", id="unit-only"),
        pytest.param("1.2.3s", id="two-dots"),
        pytest.param("inf", id="inf-text"),
        pytest.param("nan", id="nan-text"),
        pytest.param("800h", id="over-30-days"),
        pytest.param(-1, id="negative-number"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(10**400, id="huge-int"),
        pytest.param(True, id="bool"),
    ],
)
def test_parse_duration_refuses(text: str | float) -> None:
    """Anything else is a ConfigError naming the key and file."""
    with pytest.raises(ConfigError) as info:
        parse_duration(text, key="sync.interval", file="/etc/c.toml")
    assert (info.value.key, info.value.file) == ("sync.interval", "/etc/c.toml")
    assert str(info.value).startswith("/etc/c.toml: sync.interval: ")


@pytest.mark.parametrize(
    ("line", "mode"),
    [
        pytest.param('file_mode = "0600"', 0o600, id="string"),
        pytest.param('file_mode = "600"', 0o600, id="no-leading-zero"),
        pytest.param('file_mode = "0o640"', 0o640, id="0o-string"),
        pytest.param("file_mode = 0o600", 0o600, id="toml-octal-int"),
        pytest.param("file_mode = 384", 0o600, id="decimal-int"),
        pytest.param('file_mode = "0400"', 0o400, id="read-only"),
        pytest.param('dir_mode = "0755"', 0o755, id="dir-755"),
    ],
)
def test_modes_accepted(tmp_path: Path, env: dict[str, str], line: str, mode: int) -> None:
    """Modes are octal strings or TOML integers."""
    cfg = load_config(path=write(tmp_path / "c.toml", f"[sync]\n{line}\n"), env=env)
    key = line.split(" ", 1)[0]
    assert getattr(cfg.sync, key) == mode


@pytest.mark.parametrize(
    ("line", "key"),
    [
        pytest.param('file_mode = "999"', "sync.file_mode", id="not-octal"),
        pytest.param('file_mode = "0x600"', "sync.file_mode", id="hex"),
        pytest.param('file_mode = "rw"', "sync.file_mode", id="letters"),
        pytest.param('file_mode = ""', "sync.file_mode", id="empty"),
        pytest.param('file_mode = "-600"', "sync.file_mode", id="negative"),
        pytest.param('file_mode = "4600"', "sync.file_mode", id="setuid"),
        pytest.param("file_mode = 600", "sync.file_mode", id="decimal-600-is-over-0777"),
        pytest.param('file_mode = "0666"', "sync.file_mode", id="group-write"),
        pytest.param('file_mode = "0200"', "sync.file_mode", id="owner-cannot-read"),
        pytest.param("file_mode = true", "sync.file_mode", id="bool"),
        pytest.param('dir_mode = "0600"', "sync.dir_mode", id="dir-not-searchable"),
        pytest.param('dir_mode = "0777"', "sync.dir_mode", id="dir-world-writable"),
    ],
)
def test_modes_refused(tmp_path: Path, env: dict[str, str], line: str, key: str) -> None:
    """A bad mode is an error naming the key and the file."""
    path = write(tmp_path / "c.toml", f"[sync]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path=path, env=env)
    assert (info.value.key, info.value.file) == (key, path)
    assert str(info.value).startswith(f"{path}: {key}: ")


# --- bad values --------------------------------------------------------------------

BAD = [
    ("prune-string", '[sync]\nprune = "yes"', "sync.prune"),
    ("jitter-string", '[sync]\njitter = "a"', "sync.jitter"),
    ("jitter-one", "[sync]\njitter = 1", "sync.jitter"),
    ("jitter-negative", "[sync]\njitter = -0.1", "sync.jitter"),
    ("jitter-nan", "[sync]\njitter = nan", "sync.jitter"),
    ("roots-string", '[sync]\nallowed_roots = "~"', "sync.allowed_roots"),
    ("roots-empty", "[sync]\nallowed_roots = []", "sync.allowed_roots"),
    ("roots-relative", '[sync]\nallowed_roots = ["src"]', "sync.allowed_roots"),
    ("roots-number", "[sync]\nallowed_roots = [1]", "sync.allowed_roots"),
    ("interval-words", '[sync]\ninterval = "5 minutes"', "sync.interval"),
    ("interval-negative", '[sync]\ninterval = "-1s"', "sync.interval"),
    ("interval-zero", '[sync]\ninterval = "0s"', "sync.interval"),
    ("interval-zero-number", "[sync]\ninterval = 0", "sync.interval"),
    ("interval-empty", '[sync]\ninterval = ""', "sync.interval"),
    ("interval-array", '[sync]\ninterval = ["1s"]', "sync.interval"),
    ("timeout-zero", '[coder]\ntimeout = "0ms"', "coder.timeout"),
    (
        "backoff-inverted",
        '[sync]\nbackoff_initial = "2m"\nbackoff_max = "1m"',
        "sync.backoff_initial",
    ),
    ("backoff-initial-over-default", '[sync]\nbackoff_initial = "2m"', "sync.backoff_initial"),
    ("env-format-yaml", '[env_file]\nformat = "yaml"', "env_file.format"),
    ("source-vault", '[values]\nsource = "vault"', "values.source"),
    ("level-loud", '[log]\nlevel = "loud"', "log.level"),
    ("log-format-xml", '[log]\nformat = "xml"', "log.format"),
    ("user-slash", '[coder]\nuser = "../admin"', "coder.user"),
    ("user-empty", '[coder]\nuser = ""', "coder.user"),
    ("url-ftp", '[coder]\nurl = "ftp://coder.example.com"', "coder.url"),
    ("url-no-scheme", '[coder]\nurl = "coder.example.com"', "coder.url"),
    ("url-no-host", '[coder]\nurl = "https:///api"', "coder.url"),
    ("url-query", '[coder]\nurl = "https://c.example.com/?a=1"', "coder.url"),
    ("url-bad-port", '[coder]\nurl = "https://c.example.com:99999"', "coder.url"),
    ("url-number", "[coder]\nurl = 5", "coder.url"),
    ("token-file-relative", '[coder]\ntoken_file = "session"', "coder.token_file"),
    ("token-file-missing", '[coder]\ntoken_file = "/nonexistent/token"', "coder.token_file"),
    ("ca-file-missing", '[coder]\nca_file = "/nonexistent/ca.pem"', "coder.ca_file"),
    ("state-dir-relative", '[sync]\nstate_dir = "state"', "sync.state_dir"),
    ("state-dir-empty", '[sync]\nstate_dir = ""', "sync.state_dir"),
    ("home-tilde-user", '[sync]\nhome = "~bob"', "sync.home"),
    ("env-path-relative", '[env_file]\npath = "secrets.env"', "env_file.path"),
    ("allow-reserved-bad", '[env_file]\nallow_reserved = ["A-B"]', "env_file.allow_reserved"),
    ("allow-reserved-star-only", '[env_file]\nallow_reserved = ["*"]', "env_file.allow_reserved"),
    ("section-not-table", 'coder = "x"', "coder"),
]


@pytest.mark.parametrize(("toml", "key"), [pytest.param(t, k, id=i) for i, t, k in BAD])
def test_bad_values_name_key_and_file(
    tmp_path: Path, env: dict[str, str], toml: str, key: str
) -> None:
    """Each bad value is a ConfigError whose key and file point at it."""
    path = write(tmp_path / "c.toml", toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path=path, env=env)
    assert (info.value.key, info.value.file) == (key, path)
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_url_password_never_echoed(tmp_path: Path, env: dict[str, str]) -> None:
    """A URL with userinfo is refused without repeating the password."""
    path = write(tmp_path / "c.toml", '[coder]\nurl = "https://u:hunter22pw@c.example.com"\n')
    with pytest.raises(ConfigError, match=r"coder\.url") as info:
        load_config(path=path, env=env)
    assert "hunter22pw" not in str(info.value)


def test_url_trailing_slash_is_dropped(env: dict[str, str]) -> None:
    """coder.url has no trailing slash whatever form it was given in."""
    cfg = load_config(env={**env, "CODER_URL": "http://localhost:3000//"})
    assert cfg.coder.url == "http://localhost:3000"


# --- file selection and syntax ---------------------------------------------------------


def test_default_config_path_honours_xdg(home: Path) -> None:
    """The default file is under XDG_CONFIG_HOME, else ~/.config; a relative XDG is ignored."""
    assert default_config_path({"HOME": str(home)}) == f"{home}/.config/secret-agent/config.toml"
    xdg = {"HOME": str(home), "XDG_CONFIG_HOME": "/x/cfg"}
    assert default_config_path(xdg) == "/x/cfg/secret-agent/config.toml"
    rel = {"HOME": str(home), "XDG_CONFIG_HOME": "cfg"}
    assert default_config_path(rel) == f"{home}/.config/secret-agent/config.toml"


def test_default_config_file_is_read(tmp_path: Path, env: dict[str, str]) -> None:
    """The file at the default path is used when nothing names another."""
    xdg = tmp_path / "xdg"
    path = write(xdg / "secret-agent" / "config.toml", '[log]\nlevel = "error"\n')
    cfg = load_config(env={**env, "XDG_CONFIG_HOME": str(xdg)})
    assert (cfg.log.level, cfg.source_file) == ("error", path)


def test_secret_agent_config_env_names_the_file(tmp_path: Path, env: dict[str, str]) -> None:
    """SECRET_AGENT_CONFIG picks the file; an explicit path beats it."""
    by_env = write(tmp_path / "env.toml", '[log]\nlevel = "warning"\n')
    by_arg = write(tmp_path / "arg.toml", '[log]\nlevel = "debug"\n')
    env2 = {**env, "SECRET_AGENT_CONFIG": by_env}
    assert load_config(env=env2).log.level == "warning"
    assert load_config(env=env2).source_file == by_env
    assert load_config(path=by_arg, env=env2).log.level == "debug"


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_missing_explicit_file_is_an_error(tmp_path: Path, env: dict[str, str], how: str) -> None:
    """A config file named by argument or SECRET_AGENT_CONFIG must exist."""
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not found") as info:
        if how == "argument":
            load_config(path=missing, env=env)
        else:
            load_config(env={**env, "SECRET_AGENT_CONFIG": missing})
    assert info.value.file == missing


def test_toml_syntax_error_names_file_and_line(tmp_path: Path, env: dict[str, str]) -> None:
    """A TOML syntax error says which file and where in it."""
    path = write(tmp_path / "c.toml", '[sync]\ninterval = "30s"\nprune = \n')
    with pytest.raises(ConfigError, match=r"line 3, column") as info:
        load_config(path=path, env=env)
    assert info.value.file == path
    assert path in str(info.value)


def test_non_utf8_file_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    """A config file that is not UTF-8 is refused, naming the file."""
    path = tmp_path / "c.toml"
    path.write_bytes(b'[log]\nlevel = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8") as info:
        load_config(path=str(path), env=env)
    assert info.value.file == str(path)


@pytest.mark.parametrize(
    ("toml", "key", "hint"),
    [
        pytest.param('[sync]\nintervall = "5s"', "sync.intervall", "sync.interval", id="typo"),
        pytest.param('interval = "5s"', "interval", "sync.interval", id="outside-its-table"),
        pytest.param('[coder]\nusr = "me"', "coder.usr", "coder.user", id="short"),
        pytest.param("[synk]\nprune = true", "synk", "sync", id="table-typo"),
        pytest.param("[sync.extra]\na = 1", "sync.extra", None, id="subtable"),
        pytest.param("[vault]\na = 1", "vault", None, id="unknown-table"),
    ],
)
def test_unknown_keys_are_errors_with_a_hint(
    tmp_path: Path, env: dict[str, str], toml: str, key: str, hint: str | None
) -> None:
    """An unknown key or table names itself and the file, and suggests the likely key."""
    path = write(tmp_path / "c.toml", toml + "\n")
    with pytest.raises(ConfigError, match="unknown") as info:
        load_config(path=path, env=env)
    assert (info.value.key, info.value.file) == (key, path)
    if hint is not None:
        assert f"did you mean {hint!r}" in str(info.value)


# --- layering ------------------------------------------------------------------------


def test_coder_url_env_beats_file_and_flag_beats_env(tmp_path: Path, env: dict[str, str]) -> None:
    """CODER_URL overrides the file; the coder.url flag overrides CODER_URL."""
    path = write(tmp_path / "c.toml", '[coder]\nurl = "https://file.example.com"\n')
    assert load_config(path=path, env=env).coder.url == "https://file.example.com"
    env2 = {**env, "CODER_URL": "https://env.example.com/"}
    assert load_config(path=path, env=env2).coder.url == "https://env.example.com"
    flags = {"coder.url": "http://flag.example.com"}
    assert load_config(path=path, env=env2, overrides=flags).coder.url == "http://flag.example.com"


def test_empty_coder_url_env_is_unset(tmp_path: Path, env: dict[str, str]) -> None:
    """An empty CODER_URL does not blank a configured URL."""
    path = write(tmp_path / "c.toml", '[coder]\nurl = "https://file.example.com"\n')
    cfg = load_config(path=path, env={**env, "CODER_URL": ""})
    assert cfg.coder.url == "https://file.example.com"


def test_bad_coder_url_env_names_the_variable(env: dict[str, str]) -> None:
    """A bad CODER_URL is an error naming CODER_URL."""
    with pytest.raises(ConfigError) as info:
        load_config(env={**env, "CODER_URL": "coder.example.com"})
    assert (info.value.key, info.value.file) == ("CODER_URL", None)


def test_session_token_env_beats_token_file(
    tmp_path: Path, home: Path, env: dict[str, str]
) -> None:
    """CODER_SESSION_TOKEN wins over any token file, which is then not used."""
    write(home / "tok", "file-token-value\n")
    path = write(tmp_path / "c.toml", '[coder]\ntoken_file = "~/tok"\n')
    cfg = load_config(path=path, env={**env, "CODER_SESSION_TOKEN": f" {CANARY}\n"})
    assert cfg.coder.token == Secret(CANARY)
    assert cfg.coder.token_file == ""
    assert load_config(path=path, env=env).coder.token == Secret("file-token-value")


def test_agent_env(env: dict[str, str]) -> None:
    """CODER_AGENT_URL and CODER_AGENT_TOKEN come from the environment only."""
    cfg = load_config(
        env={**env, "CODER_AGENT_URL": "https://coder.internal/", "CODER_AGENT_TOKEN": CANARY2}
    )
    assert cfg.coder.agent_url == "https://coder.internal"
    assert cfg.coder.agent_token == Secret(CANARY2)
    with pytest.raises(ConfigError) as info:
        load_config(env={**env, "CODER_AGENT_URL": "nope"})
    assert info.value.key == "CODER_AGENT_URL"


@pytest.mark.parametrize("where", ["CODER_CONFIG_DIR", "XDG_CONFIG_HOME", "HOME"])
def test_coder_login_files(tmp_path: Path, home: Path, env: dict[str, str], where: str) -> None:
    """`coder login`'s url and session files give the URL and token, wherever they live."""
    if where == "CODER_CONFIG_DIR":
        coder_dir, extra = tmp_path / "cc", {"CODER_CONFIG_DIR": str(tmp_path / "cc")}
    elif where == "XDG_CONFIG_HOME":
        coder_dir, extra = tmp_path / "xdg" / "coderv2", {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    else:
        coder_dir, extra = home / ".config" / "coderv2", {}
    write(coder_dir / "url", "https://login.example.com/\n")
    write(coder_dir / "session", CANARY + "\n")
    cfg = load_config(env={**env, **extra})
    assert cfg.coder.url == "https://login.example.com"
    assert cfg.coder.token == Secret(CANARY)
    assert cfg.coder.token_file == str(coder_dir / "session")


def test_config_file_beats_coder_login(tmp_path: Path, home: Path, env: dict[str, str]) -> None:
    """The config file's url and token_file outrank the `coder login` files."""
    write(home / ".config" / "coderv2" / "url", "https://login.example.com")
    write(home / ".config" / "coderv2" / "session", "login-token-value")
    write(home / "tok", CANARY)
    path = write(
        tmp_path / "c.toml", '[coder]\nurl = "https://file.example.com"\ntoken_file = "~/tok"\n'
    )
    cfg = load_config(path=path, env=env)
    assert (cfg.coder.url, cfg.coder.token) == ("https://file.example.com", Secret(CANARY))


def test_overrides_use_the_same_validators(tmp_path: Path, env: dict[str, str]) -> None:
    """Flags are dotted keys; text stands in for numbers, booleans and one-root lists."""
    path = write(tmp_path / "c.toml", '[sync]\ninterval = "1h"\nprune = true\n')
    cfg = load_config(
        path=path,
        env=env,
        overrides={
            "sync.interval": "1s",
            "sync.prune": "false",
            "sync.jitter": "0.2",
            "sync.allowed_roots": "~/only",
            "env_file.format": "json",
            "sync.file_mode": "0640",
        },
    )
    s = cfg.sync
    assert (s.interval, s.prune, s.jitter, s.file_mode) == (1.0, False, 0.2, 0o640)
    assert s.allowed_roots == (f"{env['HOME']}/only",)
    assert cfg.env_file.format is EnvFormat.JSON


def test_relative_flag_paths_resolve_against_cwd(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path given as a flag is taken relative to the working directory, unlike the file's."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env=env, overrides={"sync.state_dir": "st", "env_file.path": "./e.env"})
    assert (cfg.sync.state_dir, cfg.env_file.path) == (f"{tmp_path}/st", f"{tmp_path}/e.env")


def test_flag_that_breaks_backoff_pair_is_blamed(tmp_path: Path, env: dict[str, str]) -> None:
    """backoff_initial > backoff_max names the key set in the higher layer."""
    path = write(tmp_path / "c.toml", '[sync]\nbackoff_initial = "30s"\n')
    with pytest.raises(ConfigError, match="longer than backoff_max") as info:
        load_config(path=path, env=env, overrides={"sync.backoff_max": "10s"})
    assert (info.value.key, info.value.file) == ("sync.backoff_max", None)


def test_relative_coder_config_dir_is_an_error(env: dict[str, str]) -> None:
    """CODER_CONFIG_DIR must be absolute (or start with ~/)."""
    with pytest.raises(ConfigError) as info:
        load_config(env={**env, "CODER_CONFIG_DIR": "coderv2"})
    assert info.value.key == "CODER_CONFIG_DIR"


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        pytest.param({"sync.intervall": "1s"}, "sync.intervall", "sync.interval", id="unknown"),
        pytest.param({"interval": "1s"}, "interval", "sync.interval", id="undotted"),
        pytest.param({"sync.interval": "soon"}, "sync.interval", "invalid", id="bad-duration"),
        pytest.param({"sync.prune": "maybe"}, "sync.prune", "true or false", id="bad-bool"),
        pytest.param({"env_file.format": "yaml"}, "env_file.format", "posix", id="bad-enum"),
    ],
)
def test_bad_overrides_are_errors(
    env: dict[str, str], overrides: dict[str, str], key: str, message: str
) -> None:
    """An unknown or invalid flag is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=message) as info:
        load_config(env=env, overrides=overrides)
    assert (info.value.key, info.value.file) == (key, None)


# --- the token file ---------------------------------------------------------------------


def test_token_file_states(tmp_path: Path, home: Path, env: dict[str, str]) -> None:
    """Empty or missing default token file: no token; a missing explicit one: an error."""
    session = home / ".config" / "coderv2" / "session"
    cfg = load_config(env=env)
    assert (cfg.coder.token, cfg.coder.token_file) == (None, str(session))
    write(session, " \n")
    assert load_config(env=env).coder.token is None
    flags = {"coder.token_file": str(tmp_path / "gone")}
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(env=env, overrides=flags)
    assert info.value.key == "coder.token_file"
    off = load_config(env=env, overrides={"coder.token_file": ""})
    assert (off.coder.token, off.coder.token_file) == (None, "")


def test_oversized_token_file_is_refused(home: Path, env: dict[str, str]) -> None:
    """A token file over 64 KiB is refused without reading it all into the message."""
    write(home / ".config" / "coderv2" / "session", CANARY * 2000)
    with pytest.raises(ConfigError, match="larger than") as info:
        load_config(env=env)
    assert info.value.key == "coder.token_file"
    assert CANARY not in str(info.value)


@pytest.mark.parametrize("source", ["file", "env"])
def test_malformed_token_error_does_not_leak(home: Path, env: dict[str, str], source: str) -> None:
    """A token with inner whitespace is refused, and the error holds none of it."""
    bad = f"{CANARY} {CANARY2}"
    if source == "file":
        write(home / ".config" / "coderv2" / "session", bad)
        env2 = env
    else:
        env2 = {**env, "CODER_SESSION_TOKEN": bad}
    with pytest.raises(ConfigError) as info:
        load_config(env=env2)
    text = f"{info.value} {info.value!r} {info.value.args}"
    assert CANARY not in text
    assert CANARY2 not in text


def test_tokens_never_in_repr_and_are_registered(home: Path, env: dict[str, str]) -> None:
    """repr and str show that a token is there, never the token; scrub knows both tokens."""
    write(home / ".config" / "coderv2" / "session", CANARY)
    cfg = load_config(env={**env, "CODER_AGENT_TOKEN": CANARY2})
    assert cfg.coder.token is not None
    assert cfg.coder.token.reveal() == CANARY
    for text in (repr(cfg), str(cfg), repr(cfg.coder), f"{cfg.coder}", str(cfg.coder.token)):
        assert CANARY not in text
        assert CANARY2 not in text
    assert "token=Secret([redacted])" in repr(cfg)
    assert "agent_token=Secret([redacted])" in repr(cfg)
    assert known_values.scrub(f"a {CANARY} b {CANARY2}") == f"a {REDACTED} b {REDACTED}"


def test_error_after_token_read_does_not_leak(tmp_path: Path, env: dict[str, str]) -> None:
    """An error raised with a token present carries no token."""
    path = write(tmp_path / "c.toml", '[sync]\nprune = "yes"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path=path, env={**env, "CODER_SESSION_TOKEN": CANARY})
    assert CANARY not in f"{info.value} {info.value!r}"
