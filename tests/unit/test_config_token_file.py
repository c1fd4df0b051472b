"""config: a token file others could read or replace is refused, as ssh refuses a key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from secret_agent.config import load_config
from secret_agent.errors import ConfigError
from secret_agent.redact import Secret

CANARY = "CANARYtok-0e7d1f5a-perm-4c2b-9f3e-a61d2c8b7e90"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def token_at(path: Path, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CANARY + "\n")
    path.chmod(mode)
    return path


def configured(tmp_path: Path, token: Path) -> str:
    config = tmp_path / "config.toml"
    config.write_text(f'[coder]\ntoken_file = "{token}"\n')
    return str(config)


@pytest.mark.parametrize(
    ("mode", "word"),
    [
        (0o644, "readable"),
        (0o666, "readable"),
        (0o640, "readable"),
        (0o604, "readable"),
        (0o620, "writable"),
        (0o602, "writable"),
        (0o610, "accessible"),
        (0o601, "accessible"),
    ],
    ids=["0644", "0666", "0640", "0604", "0620", "0602", "0610", "0601"],
)
def test_loose_token_file_is_refused_naming_the_chmod(
    tmp_path: Path, home: Path, mode: int, word: str
) -> None:
    """Any group or other bit on coder.token_file is a ConfigError naming the file,
    its mode and `chmod 600 PATH`; the token is in no part of the error."""
    token = token_at(tmp_path / "tokens" / "coder", mode)
    with pytest.raises(ConfigError) as info:
        load_config(path=configured(tmp_path, token), env={"HOME": str(home)})
    assert str(info.value) == (
        f"{token}: coder.token_file: the token file is {word} by others"
        f" (mode {mode:04o}); run `chmod 600 {token}`"
    )
    assert (info.value.key, info.value.file) == ("coder.token_file", str(token))
    assert CANARY not in f"{info.value!r} {info.value.args}"


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700], ids=["0600", "0400", "0700"])
def test_only_group_and_other_bits_count(tmp_path: Path, home: Path, mode: int) -> None:
    """A token file with no group or other bit is read; one more bit and it is refused."""
    token = token_at(tmp_path / "tokens" / "coder", mode)
    config = configured(tmp_path, token)
    assert load_config(path=config, env={"HOME": str(home)}).coder.token == Secret(CANARY)
    token.chmod(mode | 0o040)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(path=config, env={"HOME": str(home)})


def test_loose_coder_login_session_is_refused(home: Path) -> None:
    """The `coder login` session file, the default token file, is checked the same way."""
    session = token_at(home / ".config" / "coderv2" / "session", 0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\)") as info:
        load_config(env={"HOME": str(home)})
    assert f"run `chmod 600 {session}`" in str(info.value)


def test_symlinked_token_file_is_judged_by_what_it_points_to(tmp_path: Path, home: Path) -> None:
    """A token file reached through a symlink is checked where it really is."""
    real = token_at(tmp_path / "real-token", 0o644)
    link = tmp_path / "tokens" / "coder"
    link.parent.mkdir()
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="mode 0644"):
        load_config(path=configured(tmp_path, link), env={"HOME": str(home)})
    real.chmod(0o600)
    assert load_config(path=configured(tmp_path, link), env={"HOME": str(home)}).coder.token


def test_session_token_from_the_environment_needs_no_file(tmp_path: Path, home: Path) -> None:
    """With CODER_SESSION_TOKEN set the token file is not read, so its mode is no error;
    without it, the same file is refused."""
    token = token_at(tmp_path / "tokens" / "coder", 0o644)
    config = configured(tmp_path, token)
    env = {"HOME": str(home), "CODER_SESSION_TOKEN": "envtoken-1234"}
    assert load_config(path=config, env=env).coder.token == Secret("envtoken-1234")
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(path=config, env={"HOME": str(home)})


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another uid")
def test_token_file_of_another_user_is_refused(tmp_path: Path, home: Path) -> None:
    """A 0600 token file owned by another uid is refused (root included), naming the chown."""
    token = token_at(tmp_path / "tokens" / "coder", 0o600)
    os.chown(token, 65534, 65534)
    with pytest.raises(ConfigError) as info:
        load_config(path=configured(tmp_path, token), env={"HOME": str(home)})
    assert "owned by uid 65534, not by this user (uid 0)" in str(info.value)
    assert f"run `chown 0 {token}`" in str(info.value)
