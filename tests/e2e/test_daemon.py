"""The daemon as a real subprocess against the dev server: polling, outages,
signals, file watching, systemd notify and status."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from secret_agent.coder import CoderClient
from secret_agent.devserver import ThreadedDevServer
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak
from tests.e2e.daemon_harness import (
    Daemon,
    FaultProxy,
    NotifySocket,
    daemon_config,
    read,
    running,
    wait_until,
)

CANARY = "canary-daemon-4c2a"


def client_for(server: DevServer) -> CoderClient:
    return CoderClient(url=server.url, token=Secret(server.token))


@pytest.fixture
def notify_socket() -> NotifySocket:
    sock = NotifySocket()
    yield sock  # type: ignore[misc]
    sock.close()


def start(workspace: Workspace, notify: NotifySocket, **env: str) -> Daemon:
    return Daemon(workspace, env={"NOTIFY_SOCKET": notify.path, **env})


def test_ready_only_after_first_sync_then_rotation_shows_within_interval(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket
) -> None:
    """READY=1 comes after the files exist; a rotation lands within interval + 1 s."""
    daemon_config(workspace, interval="1s")
    with client_for(dev_server) as c:
        c.create_secret(name="tok", value=Secret(f"{CANARY}-1"), file_path="~/tok", env_name="TOK")
    target = workspace.home / "tok"
    with running(start(workspace, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        assert target.read_text() == f"{CANARY}-1"  # already there when READY arrived
        with client_for(dev_server) as c:
            c.update_secret("tok", value=Secret(f"{CANARY}-2"))
        took = wait_until(lambda: read(target) == f"{CANARY}-2", timeout=2.0, what="rotation")
        wait_until(lambda: f"{CANARY}-2" in (read(workspace.env_file) or ""), 1.0, "env file")
        assert took <= 2.0
        assert daemon.stop() == 0
        notify_socket.drain(0.2)
    messages = notify_socket.messages
    assert messages.index("READY=1") < messages.index("STOPPING=1")
    assert messages[-1] == "STOPPING=1"
    assert messages.count("READY=1") == 1
    assert any(m.startswith("STATUS=synced 1 secrets") for m in messages)
    assert_no_leak([f"{CANARY}-1", f"{CANARY}-2"], daemon.log_text(), "\n".join(messages))


def test_watchdog_pings_when_asked(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket
) -> None:
    """With WATCHDOG_USEC set, WATCHDOG=1 arrives at least every half period."""
    daemon_config(workspace)
    with running(start(workspace, notify_socket, WATCHDOG_USEC="400000")) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        notify_socket.messages.clear()
        time.sleep(1.0)  # a window to count pings in, not a wait for readiness
        notify_socket.drain(0.05)
        assert notify_socket.messages.count("WATCHDOG=1") >= 3
        assert daemon.stop() == 0


def test_outage_keeps_files_and_backs_off_then_recovers(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket
) -> None:
    """Server gone: alive, disk untouched, backoff growing; back on the same port: recovered."""
    daemon_config(workspace, interval="1s", backoff_initial="200ms", backoff_max="2s")
    with client_for(dev_server) as c:
        c.create_secret(name="tok", value=Secret(f"{CANARY}-1"), file_path="~/tok", env_name="TOK")
    target = workspace.home / "tok"
    with running(start(workspace, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        env_before = workspace.env_file.read_bytes()
        port = dev_server.server.port
        dev_server.server.stop()
        wait_until(lambda: len(daemon.events("sync_failed")) >= 4, 10, "four failures")
        assert daemon.alive()
        assert target.read_text() == f"{CANARY}-1"
        assert workspace.env_file.read_bytes() == env_before
        failures = daemon.events("sync_failed")
        ceilings = [e["backoff_ceiling"] for e in failures]
        assert ceilings == sorted(ceilings)
        assert ceilings[-1] > ceilings[0]
        assert all(e["kind"] == "CoderUnreachableError" for e in failures)
        status = json.loads(workspace.run("status", "--json").stdout)
        assert status["phase"] == "retrying"
        assert status["consecutive_failures"] >= 1
        assert "cannot reach Coder" in status["last_error"]
        dev_server.store.update_secret("developer", "tok", value=f"{CANARY}-2")
        with ThreadedDevServer(dev_server.store, inline_values=True, port=port):
            took = wait_until(
                lambda: read(target) == f"{CANARY}-2",
                2.0 + 1.0 + 1.0,
                "recovery within backoff_max + interval",
            )
        assert took < 4.0
        assert daemon.stop() == 0
    assert_no_leak([f"{CANARY}-1", f"{CANARY}-2"], daemon.log_text())


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        pytest.param("500", "ServerError", id="http-500"),
        pytest.param("429", "RateLimitedError", id="http-429-retry-after"),
        pytest.param("truncated", "CoderResponseError", id="truncated-json"),
    ],
)
def test_server_faults_keep_files_and_recover(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket, fault: str, kind: str
) -> None:
    """500, 429 with Retry-After and a truncated body: disk kept, retried, then recovered."""
    proxy = FaultProxy(dev_server.url)
    try:
        daemon_config(workspace, interval="1s", backoff_initial="200ms", backoff_max="2s")
        with client_for(dev_server) as c:
            c.create_secret(name="tok", value=Secret(f"{CANARY}-1"), file_path="~/tok")
        target = workspace.home / "tok"
        with running(start(workspace, notify_socket, CODER_URL=proxy.url)) as daemon:
            notify_socket.wait_for("READY=1", timeout=10)
            proxy.fault = fault
            wait_until(lambda: len(daemon.events("sync_failed")) >= 2, 10, "two failures")
            assert daemon.alive()
            assert target.read_text() == f"{CANARY}-1"
            failures = daemon.events("sync_failed")
            assert {e["kind"] for e in failures} == {kind}
            if fault == "429":
                assert all(e["retry_in"] >= 2.0 for e in failures)  # Retry-After honoured
            dev_server.store.update_secret("developer", "tok", value=f"{CANARY}-2")
            proxy.fault = None
            wait_until(lambda: read(target) == f"{CANARY}-2", 2.0 + 1.0 + 1.5, "recovery")
            assert daemon.stop() == 0
    finally:
        proxy.close()


def test_sigterm_during_rotation_burst_leaves_whole_files_and_no_temp(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket
) -> None:
    """SIGTERM while values rotate fast: exit 0, no temp files, every file holds a whole value."""
    daemon_config(workspace, interval="50ms", backoff_initial="50ms", backoff_max="200ms")
    names = [f"s{i}" for i in range(5)]
    pattern = re.compile(rf"{CANARY}-\d+-" + "x" * 20000)
    for name in names:
        dev_server.store.create_secret(
            "developer", name=name, value=f"{CANARY}-0-" + "x" * 20000, file_path=f"~/burst/{name}"
        )
    stop = threading.Event()

    def rotate() -> None:
        i = 1
        while not stop.is_set():
            for name in names:
                dev_server.store.update_secret(
                    "developer", name, value=f"{CANARY}-{i}-" + "x" * 20000
                )
            i += 1

    with running(start(workspace, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        rotator = threading.Thread(target=rotate, daemon=True)
        rotator.start()
        wait_until(lambda: len(daemon.events("file_written")) >= 15, 10, "rotations applied")
        started = time.monotonic()
        code = daemon.stop()
        stop_took = time.monotonic() - started
        stop.set()
        rotator.join()
    assert code == 0
    assert stop_took < 2.0  # "within a second or two", mid-burst
    burst = workspace.home / "burst"
    assert sorted(p.name for p in burst.iterdir()) == names  # no temp files beside them
    for name in names:
        assert pattern.fullmatch((burst / name).read_text())
    assert not list(workspace.env_file.parent.glob(".*.tmp"))


def test_sighup_reloads_edited_config(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket
) -> None:
    """After editing the config and sending SIGHUP, the env file comes out in the new format."""
    daemon_config(workspace, interval="30s")
    with client_for(dev_server) as c:
        c.create_secret(name="tok", value=Secret(CANARY), env_name="TOK")
    with running(start(workspace, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        assert workspace.env_file.read_text().startswith("#")
        daemon_config(workspace, interval="30s", extra='\n[env_file]\nformat = "json"\n')
        daemon.signal(signal.SIGHUP)

        def is_json() -> bool:
            try:
                return json.loads(workspace.env_file.read_text()) == {"TOK": CANARY}
            except ValueError:
                return False

        wait_until(is_json, 3, "env file rewritten as JSON")
        assert daemon.events("config_reloaded")
        assert daemon.stop() == 0


def test_deleted_or_edited_file_is_restored_promptly(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket
) -> None:
    """Someone deletes a secret file or edits the env file: both are back within 2 s."""
    daemon_config(workspace, interval="30s")
    with client_for(dev_server) as c:
        c.create_secret(
            name="tok", value=Secret(CANARY), file_path="~/.config/app/tok", env_name="TOK"
        )
    target = workspace.home / ".config/app/tok"
    with running(start(workspace, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        env_text = workspace.env_file.read_text()
        target.unlink()
        wait_until(lambda: read(target) == CANARY, 2.0, "deleted file restored")
        workspace.env_file.write_text("TOK=tampered\n")
        wait_until(lambda: read(workspace.env_file) == env_text, 2.0, "env file restored")
        # The log line follows the write: wait for it rather than race it.
        wait_until(lambda: len(daemon.events("file_restored")) >= 2, 2.0, "restores logged")
        assert daemon.stop() == 0


def test_token_file_change_retries_at_once_after_401(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """401 is said plainly and retried slowly; a new token in the token file is used at once."""
    token_file = tmp_path / "session"
    token_file.write_text("Badtoken00-000000000000000000000000\n")
    token_file.chmod(0o600)
    daemon_config(
        workspace,
        interval="30s",
        backoff_max="30s",
        extra=f'\n[coder]\ntoken_file = "{token_file}"\n',
    )
    with client_for(dev_server) as c:
        c.create_secret(name="tok", value=Secret(CANARY), file_path="~/tok")
    env = {"CODER_SESSION_TOKEN": ""}
    with running(start(workspace, notify_socket, **env)) as daemon:
        wait_until(lambda: daemon.events("coder_unauthorized"), 10, "401 reported")
        event = daemon.events("coder_unauthorized")[0]
        assert "session token is missing, invalid or expired" in event["error"]
        assert event["retry_in"] == 30.0
        token_file.write_text(dev_server.token + "\n")
        token_file.chmod(0o600)
        took = wait_until(lambda: read(workspace.home / "tok") == CANARY, 5, "recovery")
        assert took < 5
        assert daemon.stop() == 0
    assert dev_server.token not in daemon.log_text()


def test_status_reports_state_and_no_value_anywhere(
    dev_server: DevServer, workspace: Workspace, notify_socket: NotifySocket
) -> None:
    """`status --json` says what happened per secret; no value in logs, status or ledger."""
    daemon_config(workspace)
    values = [f"{CANARY}-{i}-value" for i in range(3)]
    with client_for(dev_server) as c:
        for i, v in enumerate(values):
            c.create_secret(name=f"s{i}", value=Secret(v), file_path=f"~/s{i}", env_name=f"S{i}")
        c.create_secret(name="bad", value=Secret(CANARY + "-bad"), file_path="/etc/nope")
    with running(start(workspace, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        result = workspace.run("status", "--json")
        human = workspace.run("status")
        assert result.returncode == 0, result.stdout + result.stderr
        status = json.loads(result.stdout)
        assert status["running"] is True
        assert status["phase"] == "synced"
        by_name = {s["name"]: s for s in status["secrets"]}
        assert by_name["s1"]["path"] == str(workspace.home / "s1")
        assert by_name["s1"]["env_name"] == "S1"
        assert by_name["bad"]["state"] == "refused"
        assert "allowed_roots" in by_name["bad"]["error"]
        assert daemon.stop() == 0
    stopped = workspace.run("status", "--json")
    assert json.loads(stopped.stdout)["running"] is False
    assert stopped.returncode == 3
    ledger = (workspace.state_dir / "ledger.json").read_text()
    status_file = (workspace.state_dir / "status.json").read_text()
    assert_no_leak(
        [*values, CANARY + "-bad"],
        daemon.log_text(),
        result.stdout,
        human.stdout,
        ledger,
        status_file,
        "\n".join(notify_socket.messages),
    )
