"""Values rest only where the user asked: never in state_dir (issue 8, item 2).

The daemon keeps its last known good state in memory; a new process reads values back
from the secret files and the env file; where neither has one, it fetches.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak
from tests.e2e.daemon_harness import Daemon, NotifySocket, daemon_config, running, wait_until

CANARY = "canary-rest-5d21"
PY = sys.executable
FORMATS = ["posix", "dotenv", "systemd", "docker", "json"]


def create(server: DevServer, name: str, value: str, **kw: str) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as client:
        client.create_secret(name=name, value=Secret(value), **kw)


def rotate(server: DevServer, name: str, value: str) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as client:
        client.update_secret(name, value=Secret(value))


def state_text(workspace: Workspace) -> str:
    """Every byte under state_dir, as text, for grepping."""
    parts = []
    for path in sorted(workspace.state_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def seed_with_refusals(server: DevServer) -> list[str]:
    """Delivered and refused secrets, each with its own canary value."""
    values = {
        "file-and-env": f"{CANARY}-both",
        "env-only": f"{CANARY}-env",
        "file-only": f"{CANARY}-file\nsecond line\n",
        "outside-roots": f"{CANARY}-outside",
        "bash-random": f"{CANARY}-random",
        "bash-seconds": f"{CANARY}-seconds",
    }
    create(server, "file-and-env", values["file-and-env"], env_name="BOTH", file_path="~/both")
    create(server, "env-only", values["env-only"], env_name="ENV_ONLY")
    create(server, "file-only", values["file-only"], file_path="~/.ssh/id_test")
    create(server, "outside-roots", values["outside-roots"], file_path="/etc/secret-agent-x")
    # Names Coder accepts and the posix env file refuses (bash owns them).
    create(server, "bash-random", values["bash-random"], env_name="RANDOM")
    create(server, "bash-seconds", values["bash-seconds"], env_name="SECONDS")
    return list(values.values())


def test_no_value_in_state_dir_after_any_command(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """run --once, check, exec and the daemon leave no value in state_dir, refused ones too."""
    values = seed_with_refusals(dev_server)
    once = workspace.run("run", "--once")
    assert once.returncode == 1, once.stderr  # some were refused
    assert (workspace.home / "both").read_text() == values[0]
    assert_no_leak(values, state_text(workspace), once.stdout, once.stderr)
    check = workspace.run("check")
    assert_no_leak(values, state_text(workspace), check.stdout, check.stderr)
    ex = workspace.run("exec", "--", "true")
    assert ex.returncode == 0, ex.stderr
    assert_no_leak(values, state_text(workspace), ex.stderr)
    daemon_config(workspace, interval="1s")
    notify = NotifySocket()
    try:
        with running(Daemon(workspace, env={"NOTIFY_SOCKET": notify.path})) as daemon:
            notify.wait_for("READY=1", timeout=15)
            rotate(dev_server, "env-only", f"{CANARY}-env-rotated")
            values.append(f"{CANARY}-env-rotated")
            wait_until(
                lambda: f"{CANARY}-env-rotated" in workspace.env_file.read_text(),
                timeout=15,
                what="the rotation in the env file",
            )
            assert daemon.stop() == 0
            log = daemon.log_text()
    finally:
        notify.close()
    assert_no_leak(values, state_text(workspace), log)


@pytest.mark.parametrize(
    "command", [("run", "--once"), ("status",), ("check",), ("exec", "--", "true")]
)
def test_a_values_json_left_by_an_older_release_is_removed(
    dev_server: DevServer, workspace: Workspace, command: tuple[str, ...]
) -> None:
    """Any command deletes the old snapshot of every value, even one that applies
    nothing, and even when Coder cannot be reached."""
    create(dev_server, "tok", CANARY, env_name="TOK")
    workspace.state_dir.mkdir(parents=True, mode=0o700)
    legacy = workspace.state_dir / "values.json"
    legacy.write_text(json.dumps({"version": 1, "secrets": [{"value": CANARY}]}))
    legacy.chmod(0o600)
    dev_server.server.stop()
    workspace.run(*command)
    assert not legacy.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_rotation_in_a_new_process_reads_the_others_back(
    dev_server: DevServer, workspace: Workspace, fmt: str
) -> None:
    """A run --once after one rotation gets only that value; the env file keeps the rest."""
    create(dev_server, "a", f"{CANARY}-a", env_name="A_VAR")
    create(dev_server, "b", f"{CANARY}-b 'quoted' $x", env_name="B_VAR", file_path="~/b")
    create(dev_server, "c", f"{CANARY}-c", env_name="C_VAR")
    first = workspace.run("run", "--once", "--env-format", fmt)
    assert first.returncode == 0, first.stderr
    rotate(dev_server, "c", f"{CANARY}-c2")
    dev_server.request_log.clear()
    second = workspace.run("run", "--once", "--env-format", fmt)
    assert second.returncode == 0, second.stderr
    assert dev_server.request_log == [
        ("GET", "/api/v2/users/me/secrets"),
        ("GET", "/api/v2/users/me/secrets/c"),
    ]
    text = workspace.env_file.read_text()
    for value in (f"{CANARY}-a", f"{CANARY}-c2"):
        assert value in text
    assert f"{CANARY}-c\n" not in text and f"{CANARY}-c'" not in text
    dev_server.request_log.clear()
    third = workspace.run("run", "--once", "--env-format", fmt)
    assert third.returncode == 0, third.stderr
    assert dev_server.request_log == [("GET", "/api/v2/users/me/secrets")]


def test_a_changed_env_file_is_fetched_again_not_trusted(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """A hand-edited env file is not read back: the values come from Coder again."""
    create(dev_server, "a", f"{CANARY}-a", env_name="A_VAR")
    assert workspace.run("run", "--once").returncode == 0
    workspace.env_file.write_text(workspace.env_file.read_text().replace("-a", "-tampered"))
    dev_server.request_log.clear()
    result = workspace.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert ("GET", "/api/v2/users/me/secrets/a") in dev_server.request_log
    assert f"{CANARY}-a" in workspace.env_file.read_text()
    assert "tampered" not in workspace.env_file.read_text()


def test_offline_exec_reads_values_back_and_names_what_it_lacks(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """With Coder gone, exec runs with the values of the env file and the files, and says
    which secrets it could not read back."""
    create(dev_server, "envtok", f"{CANARY}-env", env_name="ENV_TOK")
    create(dev_server, "both", f"{CANARY}-both", env_name="BOTH_TOK", file_path="~/both")
    create(dev_server, "gone", f"{CANARY}-gone", env_name="GONE_TOK")
    assert workspace.run("run", "--once").returncode == 0
    # Someone edits the env file: GONE_TOK's value can no longer be trusted, but
    # BOTH_TOK's is still in its own file.
    workspace.env_file.write_text(workspace.env_file.read_text() + "# edited\n")
    dev_server.server.stop()
    prog = [
        PY,
        "-c",
        "import os; print(os.environ.get('BOTH_TOK'), os.environ.get('GONE_TOK'))",
    ]
    result = workspace.run("exec", "--", *prog)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{CANARY}-both", "None"]
    assert "last known good" in result.stderr
    assert "gone" in result.stderr and "envtok" in result.stderr
    assert_no_leak([f"{CANARY}-env", f"{CANARY}-both", f"{CANARY}-gone"], result.stderr)


def test_fast_path_fetches_when_a_value_cannot_be_read_back(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Beside a fresh daemon, exec asks no one while every value reads back; with the env
    file off, an env-only secret has no value on disk, so exec fetches."""
    daemon_config(workspace, interval="1s", extra='[env_file]\npath = ""\n')
    create(dev_server, "both", f"{CANARY}-both", env_name="BOTH", file_path="~/both")
    prog = [PY, "-c", "import os; print(os.environ['BOTH'], os.environ.get('ENV_ONLY'))"]
    notify = NotifySocket()
    try:
        with running(Daemon(workspace, env={"NOTIFY_SOCKET": notify.path})) as daemon:
            notify.wait_for("READY=1", timeout=15)
            dev_server.request_log.clear()
            fast = workspace.run("exec", "--max-age", "1h", "--", *prog)
            assert fast.stdout.split() == [f"{CANARY}-both", "None"], fast.stderr
            assert dev_server.request_log == []
            create(dev_server, "env-only", f"{CANARY}-env", env_name="ENV_ONLY")
            wait_until(
                lambda: "env-only" in (workspace.state_dir / "ledger.json").read_text(),
                timeout=15,
                what="the daemon to see the new secret",
            )
            dev_server.request_log.clear()
            slow = workspace.run("exec", "--max-age", "1h", "--", *prog)
            assert slow.stdout.split() == [f"{CANARY}-both", f"{CANARY}-env"], slow.stderr
            assert ("GET", "/api/v2/users/me/secrets") in dev_server.request_log
            assert daemon.stop() == 0
    finally:
        notify.close()


def test_daemon_restores_a_tampered_file_from_memory_without_the_network(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """With the server stopped, a deleted secret file and a changed env file come back."""
    daemon_config(workspace, interval="30s")
    create(dev_server, "tok", CANARY, env_name="TOK", file_path="~/tok")
    notify = NotifySocket()
    target = workspace.home / "tok"
    try:
        with running(Daemon(workspace, env={"NOTIFY_SOCKET": notify.path})) as daemon:
            notify.wait_for("READY=1", timeout=15)
            dev_server.server.stop()
            target.unlink()
            workspace.env_file.write_text("TOK=tampered\n")
            wait_until(target.exists, timeout=15, what="the file restored")
            wait_until(
                lambda: CANARY in workspace.env_file.read_text(),
                timeout=15,
                what="the env file restored",
            )
            assert target.read_text() == CANARY
            assert daemon.stop() == 0
    finally:
        notify.close()
    assert CANARY not in state_text(workspace)


def test_ledger_records_versions_but_no_value(dev_server: DevServer, workspace: Workspace) -> None:
    """The ledger says which version rests where, and holds nothing that is a value."""
    create(dev_server, "tok", CANARY, env_name="TOK", file_path="~/tok")
    assert workspace.run("run", "--once").returncode == 0
    doc = json.loads((workspace.state_dir / "ledger.json").read_text())
    assert doc["version"] == 2
    assert [s["name"] for s in doc["secrets"]] == ["tok"]
    by_path = {e["path"]: e for e in doc["entries"]}
    assert by_path[str(workspace.home / "tok")]["version"][1:] == ["TOK", "~/tok"]
    env = by_path[str(workspace.env_file)]
    assert env["env_format"] == "posix"
    assert [v["name"] for v in env["variables"]] == ["TOK"]
    assert CANARY not in json.dumps(doc)
    assert os.stat(workspace.state_dir / "ledger.json").st_mode & 0o077 == 0


def test_exec_alone_leaves_what_an_offline_exec_reads_back(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """With no daemon and no run --once ever, an exec that fetched leaves its values
    where the next, offline, exec reads them back."""
    create(dev_server, "tok", f"{CANARY}-tok", env_name="TOK")
    prog = [PY, "-c", "import os; print(os.environ.get('TOK'))"]
    online = workspace.run("exec", "--", *prog)
    assert online.stdout.strip() == f"{CANARY}-tok", online.stderr
    dev_server.server.stop()
    offline = workspace.run("exec", "--", *prog)
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.strip() == f"{CANARY}-tok"
    assert "last known good" in offline.stderr
    assert f"{CANARY}-tok" not in state_text(workspace)


def test_a_secret_refused_everywhere_does_not_send_exec_to_coder(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """A secret the daemon refused (a symlink at its target) has no value on disk and
    never will: exec beside a fresh daemon still asks no one."""
    daemon_config(workspace, interval="30s")
    create(dev_server, "ok", f"{CANARY}-ok", env_name="OK")
    create(dev_server, "linked", f"{CANARY}-linked", file_path="~/linked")
    (workspace.home / "linked").symlink_to(workspace.home / "elsewhere")
    notify = NotifySocket()
    try:
        with running(Daemon(workspace, env={"NOTIFY_SOCKET": notify.path})) as daemon:
            notify.wait_for("READY=1", timeout=15)
            dev_server.request_log.clear()
            fast = workspace.run("exec", "--", PY, "-c", "import os; print(os.environ['OK'])")
            assert fast.stdout.strip() == f"{CANARY}-ok", fast.stderr
            assert dev_server.request_log == []
            assert daemon.stop() == 0
    finally:
        notify.close()
    assert not (workspace.home / "elsewhere").exists()
    assert_no_leak([f"{CANARY}-ok", f"{CANARY}-linked"], fast.stderr)
