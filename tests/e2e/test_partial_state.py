"""A state that lacks some values never costs the user those secrets (issue 8 review).

A state read back from disk may be incomplete (someone edited the env file), and
`exec --watch`'s flags may differ from a running daemon's config. Neither may remove
a file or drop an env-file line of a secret whose value it does not have.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak
from tests.e2e.daemon_harness import Daemon, NotifySocket, daemon_config, running, wait_until

CANARY = "canary-partial-51c7"
PY = sys.executable
CHILD = [
    PY,
    "-u",
    "-c",
    textwrap.dedent("""
        import os, signal, time
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        print("started", flush=True)
        while True:
            time.sleep(0.05)
    """),
]


def create(server: DevServer, name: str, value: str, **kw: str) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as c:
        c.create_secret(name=name, value=Secret(value), **kw)


def delete(server: DevServer, name: str) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as c:
        c.delete_secret(name)


def watch(workspace: Workspace, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "secret_agent", "exec", "--watch", *flags, "--", *CHILD],
        env=workspace.env,
        cwd=workspace.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def started(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "started", proc.stderr.read() if proc.stderr else ""


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    _out, err = proc.communicate()
    return err or ""


def seed(server: DevServer, workspace: Workspace) -> None:
    """Three secrets: one with a file and a variable, one variable only, one file only;
    then someone edits the env file, so the variable-only value cannot be read back."""
    create(server, "both", f"{CANARY}-both", env_name="BOTH", file_path="~/both")
    create(server, "envonly", f"{CANARY}-env", env_name="ENV_ONLY")
    create(server, "fileonly", f"{CANARY}-file", file_path="~/fileonly")
    first = workspace.run("run", "--once")
    assert first.returncode == 0, first.stderr
    workspace.env_file.write_text(workspace.env_file.read_text() + "# edited by hand\n")


def test_offline_exec_never_drops_a_variable_it_could_not_read_back(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """exec with Coder down puts a file's mode right, but leaves the env file whole:
    rewriting it from what it could read back would drop ENV_ONLY's line."""
    seed(dev_server, workspace)
    edited = workspace.env_file.read_text()
    (workspace.home / "fileonly").chmod(0o644)  # so exec has something to put right
    dev_server.server.stop()
    result = workspace.run("exec", "--", "true")
    assert result.returncode == 0, result.stderr
    assert "envonly" in result.stderr  # named as not delivered
    assert workspace.env_file.read_text() == edited
    assert (workspace.home / "fileonly").stat().st_mode & 0o777 == 0o600
    assert_no_leak([f"{CANARY}-both", f"{CANARY}-env", f"{CANARY}-file"], result.stderr)


def test_exec_watch_started_offline_keeps_what_it_could_not_read_back(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """exec --watch with Coder down runs on what it read back; its restores neither
    drop the variable it lacks nor remove anything."""
    daemon_config(workspace, interval="30s")
    seed(dev_server, workspace)
    edited = workspace.env_file.read_text()
    dev_server.server.stop()
    proc = watch(workspace)
    try:
        started(proc)
        (workspace.home / "both").unlink()  # a restore must put this one back
        wait_until((workspace.home / "both").exists, 15, "the restore of ~/both")
        assert workspace.env_file.read_text() == edited
        assert (workspace.home / "fileonly").read_text() == f"{CANARY}-file"
    finally:
        err = stop(proc)
    assert_no_leak([f"{CANARY}-both", f"{CANARY}-env", f"{CANARY}-file"], err)


def test_exec_watch_beside_a_daemon_removes_nothing_of_the_daemons(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """exec --watch --env-file '' beside a running daemon: its passes leave the daemon's
    env file, and say why they remove nothing."""
    daemon_config(workspace, interval="30s")
    create(dev_server, "tok", f"{CANARY}-tok", env_name="TOK", file_path="~/tok")
    notify = NotifySocket()
    try:
        with running(Daemon(workspace, env={"NOTIFY_SOCKET": notify.path})) as daemon:
            notify.wait_for("READY=1", timeout=15)
            before = workspace.env_file.read_bytes()
            proc = watch(workspace, "--env-file", "")
            try:
                started(proc)
                wait_until(
                    lambda: (
                        json.loads((workspace.state_dir / "status.json").read_text())["phase"]
                        == "synced"
                    ),
                    15,
                    "exec --watch's first pass",
                )
                assert workspace.env_file.read_bytes() == before
            finally:
                err = stop(proc)
            assert daemon.stop() == 0
    finally:
        notify.close()
    assert "beside_a_daemon" in err
    assert_no_leak([f"{CANARY}-tok"], err)


def test_exec_watch_alone_keeps_the_files_and_removes_a_deleted_secrets(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """As a container's entrypoint (no daemon beside it) exec --watch is the keeper: a
    deleted secret's file goes."""
    daemon_config(workspace, interval="200ms")
    create(dev_server, "keep", f"{CANARY}-keep", file_path="~/keep")
    create(dev_server, "gone", f"{CANARY}-gone", file_path="~/gone")
    proc = watch(workspace, "--on-change", "none")
    try:
        started(proc)
        assert (workspace.home / "gone").exists()
        delete(dev_server, "gone")
        wait_until(lambda: not (workspace.home / "gone").exists(), 15, "~/gone to be removed")
        assert (workspace.home / "keep").read_text() == f"{CANARY}-keep"
    finally:
        err = stop(proc)
    assert "beside_a_daemon" not in err
    assert_no_leak([f"{CANARY}-keep", f"{CANARY}-gone"], err)
