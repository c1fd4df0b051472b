"""The agent's own files, as real subprocesses: a state_dir or token file others could
read or change is refused naming the fix, and a symlink planted among the state files
is a clear error naming it (exit 6), never followed."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak

CANARY = "canary-state-safety-2b7f9e41"
VICTIM = b"a file outside state_dir that must never be touched\n"
STATE_FILES = ["ledger.json", "status.json", "lock"]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def create_secret(server: DevServer) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as client:
        client.create_secret(name="tok", value=Secret(CANARY), file_path="~/token")


def private_state_dir(workspace: Workspace) -> Path:
    state = workspace.state_dir
    state.mkdir(parents=True)
    state.chmod(0o700)
    return state


def plant_link(workspace: Workspace, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A symlink at state_dir/NAME to a file outside; returns (link, victim)."""
    victim = tmp_path / "outside" / "victim"
    victim.parent.mkdir()
    victim.write_bytes(VICTIM)
    victim.chmod(0o644)
    link = private_state_dir(workspace) / name
    link.symlink_to(victim)
    return link, victim


def assert_untouched(link: Path, victim: Path) -> None:
    assert link.is_symlink()
    assert victim.read_bytes() == VICTIM
    assert mode(victim) == 0o644


@pytest.mark.parametrize("name", STATE_FILES)
def test_symlink_planted_at_a_state_file_stops_run_once_naming_it(
    dev_server: DevServer, workspace: Workspace, tmp_path: Path, name: str
) -> None:
    """`run --once` with a symlink at ledger.json, status.json or the lock exits 6 naming
    it, applies nothing, and leaves the file it points to as it was."""
    create_secret(dev_server)
    link, victim = plant_link(workspace, tmp_path, name)
    result = workspace.run("run", "--once")
    assert result.returncode == 6, result.stderr
    assert str(link) in result.stderr
    assert "symlink" in result.stderr
    assert "internal error" not in result.stderr
    assert_untouched(link, victim)
    assert not (workspace.home / "token").exists()
    assert_no_leak([CANARY], result.stdout, result.stderr)


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_symlink_planted_at_status_json_makes_status_fail_naming_it(
    workspace: Workspace, tmp_path: Path, json_flag: list[str]
) -> None:
    """`status` with a symlink at status.json exits 6 naming it (not "never run"), and
    the file it points to is untouched."""
    link, victim = plant_link(workspace, tmp_path, "status.json")
    result = workspace.run("status", *json_flag)
    assert result.returncode == 6, (result.stdout, result.stderr)
    assert str(link) in result.stderr
    assert result.stdout == ""
    assert_untouched(link, victim)


@pytest.mark.parametrize("loose", [0o777, 0o755, 0o750], ids=["0777", "0755", "0750"])
def test_loose_state_dir_is_refused_naming_the_chmod(
    dev_server: DevServer, workspace: Workspace, loose: int
) -> None:
    """A state_dir with group or other bits stops `run --once` and `status` (exit 6)
    with the mode and `chmod 700 PATH`; nothing is applied and its mode is left alone;
    after that chmod the same run succeeds."""
    create_secret(dev_server)
    state = private_state_dir(workspace)
    state.chmod(loose)
    for command in (["run", "--once"], ["status"]):
        result = workspace.run(*command)
        assert result.returncode == 6, (command, result.stderr)
        assert f"(mode {loose:04o}); run `chmod 700 {state}`" in result.stderr, command
    assert mode(state) == loose
    assert not (workspace.home / "token").exists()
    state.chmod(0o700)
    result = workspace.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert (workspace.home / "token").read_text() == CANARY


def test_exec_refuses_a_loose_state_dir(dev_server: DevServer, workspace: Workspace) -> None:
    """`exec` reads state without the lock and refuses a loose state_dir too (exit 6),
    without running the command."""
    create_secret(dev_server)
    state = private_state_dir(workspace)
    state.chmod(0o777)
    marker = workspace.home / "ran"
    result = workspace.run("exec", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert result.returncode == 6, result.stderr
    assert f"chmod 700 {state}" in result.stderr
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_state_dir_of_another_user_is_refused(dev_server: DevServer, workspace: Workspace) -> None:
    """A state_dir owned by another uid stops the pass (exit 6), naming the chown."""
    create_secret(dev_server)
    state = private_state_dir(workspace)
    os.chown(state, 65534, 65534)
    result = workspace.run("run", "--once")
    assert result.returncode == 6, result.stderr
    assert f"owned by uid 65534, not by this user (uid 0); run `chown 0 {state}`" in (result.stderr)
    assert not (workspace.home / "token").exists()


@pytest.mark.parametrize("loose", [0o644, 0o666], ids=["0644", "0666"])
def test_loose_coder_login_session_is_refused_naming_the_chmod(
    dev_server: DevServer, workspace: Workspace, loose: int
) -> None:
    """A `coder login` session file others can read stops the command (exit 2) with its
    mode and `chmod 600 PATH`, never the token; after that chmod it is used."""
    create_secret(dev_server)
    session = workspace.home / ".config" / "coderv2" / "session"
    session.parent.mkdir(parents=True)
    session.write_text(dev_server.token + "\n")
    session.chmod(loose)
    no_env_token = {"CODER_SESSION_TOKEN": ""}
    result = workspace.run("run", "--once", env=no_env_token)
    assert result.returncode == 2, result.stderr
    assert (
        f"{session}: coder.token_file: the token file is readable by others"
        f" (mode {loose:04o}); run `chmod 600 {session}`"
    ) in result.stderr
    assert_no_leak([dev_server.token], result.stdout, result.stderr)
    assert not (workspace.home / "token").exists()
    session.chmod(0o600)
    result = workspace.run("run", "--once", env=no_env_token)
    assert result.returncode == 0, result.stderr
    assert (workspace.home / "token").read_text() == CANARY
