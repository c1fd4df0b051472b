"""The CLI with `values.source` = agent / auto against the dev server WITHOUT inline values.

Values reach the workspace only through the agent RPC's GetManifest, as in a real
Coder workspace: `run --once` and the daemon as subprocesses, the dev server's agent
RPC counters and fault hooks as the witness of what crossed the wire.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from secret_agent.devserver import Store, ThreadedDevServer
from secret_agent.devserver.agentrpc import Fault
from tests.conftest import DEV_USER, Workspace, assert_no_leak
from tests.e2e.daemon_harness import Daemon, NotifySocket, daemon_config, read, running, wait_until
from tests.e2e.test_devserver_cli import HANDSHAKE_TIMEOUT, DevServerProcess

CANARY = "canary-agentsrc-6d0b"
LIST = ("GET", "/api/v2/users/me/secrets")
BUILDINFO = ("GET", "/api/v2/buildinfo")
AGENT = '\n[values]\nsource = "agent"\n'
VALUES = {
    "plain": f"{CANARY}-plain",
    "quotes": f'{CANARY} it\'s "quoted" and $HOME `id`',
    "multiline": f"{CANARY}\nline two\n",
    "unicode": f"{CANARY} pässwörd ✓",
}


@dataclass
class AgentServer:
    """A dev server that never inlines values, a user, its session and agent tokens."""

    server: ThreadedDevServer
    store: Store
    token: str
    agent_token: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def rpc_calls(self) -> int:
        return self.server.agent_rpc.get_manifest_calls

    def create(self, name: str, value: str, *, env: str = "", path: str = "") -> None:
        self.store.create_secret(DEV_USER, name=name, value=value, env_name=env, file_path=path)


@pytest.fixture
def agent_server() -> Iterator[AgentServer]:
    store = Store()
    store.add_user(DEV_USER)
    token, agent_token = store.issue_token(DEV_USER), store.issue_agent_token(DEV_USER)
    with ThreadedDevServer(store) as server:
        yield AgentServer(server=server, store=store, token=token, agent_token=agent_token)


def make_workspace(root: Path, server: AgentServer, *, session: bool = True) -> Workspace:
    """A home with a debug-logging config; both tokens, or (session=False) agent-only."""
    token = server.token if session else None
    return workspace_at(root, url=server.url, agent_token=server.agent_token, token=token)


def workspace_at(root: Path, *, url: str, agent_token: str, token: str | None) -> Workspace:
    home = root / "home"
    home.mkdir(parents=True)
    config_path = home / ".config/secret-agent/config.toml"
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SECRET_AGENT_CONFIG": str(config_path),
        "LANG": "C.UTF-8",
        "CODER_AGENT_URL": url,
        "CODER_AGENT_TOKEN": agent_token,
    }
    if token is not None:
        env |= {"CODER_URL": url, "CODER_SESSION_TOKEN": token}
    ws = Workspace(home=home, config_path=config_path, env=env)
    ws.write_config('[log]\nformat = "json"\nlevel = "debug"\n')
    return ws


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def tree(home: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under home but the agent's own state and config: bytes and mode."""
    skip = (".local/state", ".config/secret-agent/config.toml")
    return {
        str(p.relative_to(home)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(home.rglob("*"))
        if p.is_file() and not str(p.relative_to(home)).startswith(skip)
    }


def seed_values(server: AgentServer) -> None:
    for i, (name, value) in enumerate(VALUES.items()):
        server.create(name, value, env=f"V_{i}", path=f"~/.secrets/{name}")
    server.create("env-only", f"{CANARY}-env-only", env="ENV_ONLY")
    server.create("file-only", f"{CANARY}-file-only", path="~/file-only.txt")


def test_agent_mode_gives_the_same_files_and_env_file_as_inline_mode(
    agent_server: AgentServer, tmp_path: Path
) -> None:
    """Same store, inline mode vs agent mode: byte-identical files, modes and env file."""
    seed_values(agent_server)
    with ThreadedDevServer(agent_server.store, inline_values=True) as inline_server:
        inline_ws = make_workspace(tmp_path / "inline", agent_server)
        inline_ws.env |= {"CODER_URL": inline_server.url}
        inline_ws.write_config('[values]\nsource = "inline"\n[log]\nformat = "json"\n')
        inline = inline_ws.run("run", "--once")
    agent_ws = make_workspace(tmp_path / "agent", agent_server)
    agent_ws.write_config(AGENT.lstrip() + '[log]\nformat = "json"\nlevel = "debug"\n')
    agent_server.server.request_log.clear()
    agent = agent_ws.run("run", "--once")
    assert inline.returncode == 0, inline.stderr
    assert agent.returncode == 0, agent.stderr
    expected = tree(inline_ws.home)
    assert len(expected) == len(VALUES) + 2  # the files and the env file
    assert tree(agent_ws.home) == expected
    # No get by name: the values came by RPC (after the version check the RPC needs).
    assert agent_server.server.request_log == [LIST, BUILDINFO]
    assert agent_server.rpc_calls == 1
    assert_no_leak(list(VALUES.values()), agent.stdout + agent.stderr)


def test_second_run_with_no_change_makes_one_list_and_no_rpc_call(
    agent_server: AgentServer, tmp_path: Path
) -> None:
    """With a session token and nothing changed, `run --once` lists and never dials the RPC."""
    seed_values(agent_server)
    ws = make_workspace(tmp_path, agent_server)
    ws.write_config(AGENT.lstrip())
    assert ws.run("run", "--once").returncode == 0
    calls, dials = agent_server.rpc_calls, len(agent_server.server.agent_rpc.dials)
    agent_server.server.request_log.clear()
    assert ws.run("run", "--once").returncode == 0
    assert agent_server.server.request_log == [LIST]
    assert (agent_server.rpc_calls, len(agent_server.server.agent_rpc.dials)) == (calls, dials)


def test_auto_takes_values_from_the_agent_when_rest_has_none(
    agent_server: AgentServer, tmp_path: Path
) -> None:
    """Default `auto`: gets carry no value, so one GetManifest serves every changed secret
    (after the first value-less get, no more gets are sent)."""
    seed_values(agent_server)
    ws = make_workspace(tmp_path, agent_server)
    agent_server.server.request_log.clear()
    result = ws.run("run", "--once")
    assert result.returncode == 0, result.stderr
    gets = [p for m, p in agent_server.server.request_log if m == "GET" and p != LIST[1]]
    assert len([p for p in gets if "/secrets/" in p]) == 1
    assert (ws.home / ".secrets/multiline").read_text() == VALUES["multiline"]
    assert (ws.home / "file-only.txt").read_text() == f"{CANARY}-file-only"
    assert agent_server.rpc_calls == 1
    assert_no_leak(list(VALUES.values()), result.stdout + result.stderr)


def test_auto_without_agent_token_names_both_ways(
    agent_server: AgentServer, tmp_path: Path
) -> None:
    """No inline value and no agent token: exit 5 with a message naming both ways."""
    agent_server.create("tok", CANARY, env="TOK")
    ws = make_workspace(tmp_path, agent_server)
    del ws.env["CODER_AGENT_TOKEN"]
    result = ws.run("run", "--once")
    assert result.returncode == 5
    assert "--inline-values" in result.stderr
    assert "CODER_AGENT_TOKEN" in result.stderr


def test_agent_only_mode_works_without_a_session_token(
    agent_server: AgentServer, tmp_path: Path
) -> None:
    """Only CODER_AGENT_URL and CODER_AGENT_TOKEN: the manifest alone fills files and env."""
    seed_values(agent_server)
    ws = make_workspace(tmp_path, agent_server, session=False)
    result = ws.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert agent_server.server.request_log == [BUILDINFO]  # no REST list or get at all
    for name, value in VALUES.items():
        assert (ws.home / ".secrets" / name).read_text() == value
    env_text = ws.env_file.read_text()
    assert "ENV_ONLY=" in env_text
    assert (ws.home / "file-only.txt").read_text() == f"{CANARY}-file-only"
    ledger = json.loads((ws.state_dir / "ledger.json").read_text())
    names = {e["secret"] for e in ledger["entries"] if e["secret"]}
    assert names == {"V_0", "V_1", "V_2", "V_3", "~/file-only.txt"}  # env_name, else file_path
    assert_no_leak(list(VALUES.values()), result.stdout + result.stderr)


def test_agent_only_inline_source_is_refused_clearly(
    agent_server: AgentServer, tmp_path: Path
) -> None:
    """`inline` without a session token cannot work; the error says why (exit 5)."""
    ws = make_workspace(tmp_path, agent_server, session=False)
    ws.write_config('[values]\nsource = "inline"\n')
    result = ws.run("run", "--once")
    assert result.returncode == 5
    assert "no session token" in result.stderr


def start_daemon(ws: Workspace, notify: NotifySocket) -> Daemon:
    return Daemon(ws, env={"NOTIFY_SOCKET": notify.path})


@pytest.mark.parametrize("session", [True, False], ids=["session-and-agent", "agent-only"])
def test_daemon_follows_rotation_and_deletion(
    agent_server: AgentServer, tmp_path: Path, notify_socket: NotifySocket, session: bool
) -> None:
    """The daemon in agent mode picks up a rotation and a deletion within a few polls."""
    ws = make_workspace(tmp_path, agent_server, session=session)
    daemon_config(ws, interval="300ms", extra=AGENT)
    agent_server.create("a", f"{CANARY}-a1", env="A_TOKEN", path="~/a.txt")
    agent_server.create("b", f"{CANARY}-b", env="B_TOKEN", path="~/b.txt")
    a, b = ws.home / "a.txt", ws.home / "b.txt"
    with running(start_daemon(ws, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        assert read(a) == f"{CANARY}-a1"
        agent_server.store.update_secret(DEV_USER, "a", value=f"{CANARY}-a2")
        wait_until(lambda: read(a) == f"{CANARY}-a2", 5, "rotation")
        wait_until(lambda: f"{CANARY}-a2" in (read(ws.env_file) or ""), 5, "env file rotated")
        agent_server.store.delete_secret(DEV_USER, "b")
        wait_until(lambda: not b.exists(), 5, "deleted secret's file removed")
        wait_until(lambda: "B_TOKEN" not in (read(ws.env_file) or ""), 5, "variable removed")
        assert read(a) == f"{CANARY}-a2"
        assert daemon.stop() == 0
    assert agent_server.server.agent_rpc.connections == 1  # one session for every poll
    assert_no_leak([f"{CANARY}-a1", f"{CANARY}-a2", f"{CANARY}-b"], daemon.log_text())


def test_daemon_steady_state_makes_zero_getmanifest_calls(
    agent_server: AgentServer, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """With a session token and no change, polls are one list each and no GetManifest."""
    ws = make_workspace(tmp_path, agent_server)
    daemon_config(ws, interval="200ms", extra=AGENT)
    agent_server.create("a", f"{CANARY}-a", env="A_TOKEN", path="~/a.txt")
    log = agent_server.server.request_log
    with running(start_daemon(ws, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        assert agent_server.rpc_calls == 1  # the first pass fetched the new secret
        lists = log.count(LIST)
        wait_until(lambda: log.count(LIST) >= lists + 5, 10, "five more polls")
        assert agent_server.rpc_calls == 1
        assert daemon.stop() == 0


def test_daemon_reconnects_after_a_drop_mid_call_and_loses_nothing(
    agent_server: AgentServer, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """Two calls cut mid-answer: files and env file stay as applied, then the rotation lands."""
    ws = make_workspace(tmp_path, agent_server)
    daemon_config(ws, interval="300ms", backoff_initial="200ms", backoff_max="1s", extra=AGENT)
    agent_server.create("a", f"{CANARY}-a1", env="A_TOKEN", path="~/a.txt")
    agent_server.create("b", f"{CANARY}-b", env="B_TOKEN", path="~/b.txt")
    rpc = agent_server.server.agent_rpc
    with running(start_daemon(ws, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        before = tree(ws.home)
        rpc.fail_next(2, Fault.DROP)
        agent_server.store.update_secret(DEV_USER, "a", value=f"{CANARY}-a2")
        wait_until(lambda: len(daemon.events("sync_failed")) >= 2, 10, "two failed passes")
        assert tree(ws.home) == before  # nothing lost or half-written meanwhile
        failures = daemon.events("sync_failed")
        assert {e["kind"] for e in failures} == {"CoderUnreachableError"}
        assert all(e["files"] == "kept as last applied" for e in failures)
        wait_until(lambda: read(ws.home / "a.txt") == f"{CANARY}-a2", 10, "recovery")
        assert read(ws.home / "b.txt") == f"{CANARY}-b"
        assert daemon.stop() == 0
    assert rpc.connections == 3  # the first, the one that failed again, the good one
    assert_no_leak([f"{CANARY}-a1", f"{CANARY}-a2", f"{CANARY}-b"], daemon.log_text())


def test_debug_logs_carry_no_value_or_token(
    agent_server: AgentServer, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """At debug level, through faults and rotations, no value or agent token is logged."""
    ws = make_workspace(tmp_path, agent_server, session=False)
    daemon_config(ws, interval="200ms", backoff_initial="100ms", backoff_max="300ms", extra=AGENT)
    seed_values(agent_server)
    rpc = agent_server.server.agent_rpc
    with running(start_daemon(ws, notify_socket)) as daemon:
        notify_socket.wait_for("READY=1", timeout=10)
        for fault in (Fault.DROP, Fault.GO_AWAY, Fault.ERROR):
            rpc.fail_next(1, fault)
        wait_until(lambda: len(daemon.events("sync_failed")) >= 3, 10, "three faults")
        agent_server.store.update_secret(DEV_USER, "plain", value=f"{CANARY}-rotated")
        wait_until(lambda: read(ws.home / ".secrets/plain") == f"{CANARY}-rotated", 10, "rotation")
        assert daemon.stop() == 0
    text = daemon.log_text()
    assert '"level": "debug"' in text
    assert_no_leak([*VALUES.values(), f"{CANARY}-rotated", agent_server.agent_token, CANARY], text)


def test_dev_server_cli_prints_agent_lines_that_drive_agent_only_mode(tmp_path: Path) -> None:
    """`secret-agent dev-server` prints CODER_AGENT_URL/TOKEN after its three lines; they
    run the full loop without --inline-values, and a persisted store keeps the token."""
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(
        json.dumps(
            {"users": [{"username": DEV_USER, "secrets": [
                {"name": "tok", "value": f"{CANARY}-cli", "env_name": "TOK", "file_path": "~/tok"},
            ]}]}
        )
    )  # fmt: skip
    persist = tmp_path / "store.json"
    lines = []
    for _ in range(2):
        server = DevServerProcess(tmp_path, "--seed", str(seed_file), "--persist", str(persist))
        try:
            first = server.handshake()
            extra = [server.lines.get(timeout=HANDSHAKE_TIMEOUT) or "" for _ in range(2)]
            agent = dict(line.rstrip("\n").split("=", 1) for line in extra)
            assert agent["CODER_AGENT_URL"] == first["url"]
            lines.append(agent["CODER_AGENT_TOKEN"])
            ws = workspace_at(
                tmp_path / f"ws{len(lines)}",
                url=agent["CODER_AGENT_URL"],
                agent_token=agent["CODER_AGENT_TOKEN"],
                token=None,
            )
            result = ws.run("run", "--once")
            assert result.returncode == 0, result.stderr
            assert (ws.home / "tok").read_text() == f"{CANARY}-cli"
            assert server.stop() == 0
            assert_no_leak([f"{CANARY}-cli"], server.output(), result.stdout + result.stderr)
        finally:
            server.close()
    assert lines[0] == lines[1]  # the agent token survives a restart on the same store


def test_a_failed_write_is_never_read_back_as_the_new_value(
    agent_server: AgentServer, tmp_path: Path
) -> None:
    """A rotation whose env file write fails leaves the old line on disk; with no
    `updated_at` to tell versions apart, exec must still not take it for the current
    value: offline, it names the secret as not delivered (beside a daemon, it fetches)."""
    ws = make_workspace(tmp_path, agent_server, session=False)
    env_dir = ws.home / "envdir"
    ws.write_config(
        AGENT.lstrip() + f'[env_file]\npath = "{env_dir}/secrets.env"\n[log]\nformat = "json"\n'
    )
    agent_server.create("tok", f"{CANARY}-old", env="TOK")
    agent_server.create("other", f"{CANARY}-other", path="~/other")
    assert ws.run("run", "--once").returncode == 0
    agent_server.store.update_secret(DEV_USER, "tok", value=f"{CANARY}-new")
    # The write fails (a file where its directory should be: root ignores modes), and
    # then the old env file is back as it was.
    env_dir.rename(ws.home / "aside")
    env_dir.write_text("not a directory")
    failed = ws.run("run", "--once")
    assert failed.returncode == 1, failed.stderr
    env_dir.unlink()
    (ws.home / "aside").rename(env_dir)
    assert f"{CANARY}-old" in (env_dir / "secrets.env").read_text()
    agent_server.server.stop()
    prog = [sys.executable, "-c", "import os; print(os.environ.get('TOK'))"]
    offline = ws.run("exec", "--", *prog)
    assert offline.stdout.strip() == "None", offline.stderr
    assert "not delivered" in offline.stderr and "TOK" in offline.stderr
    assert_no_leak(
        [f"{CANARY}-old", f"{CANARY}-new", f"{CANARY}-other"], offline.stderr, failed.stderr
    )
