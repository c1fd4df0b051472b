"""The agent RPC client against the dev server's emulation, over real loopback WebSockets.

Every test dials `GET /api/v2/workspaceagents/me/rpc` for real: websockets' sync
client, a yamux session, drpc and the Manifest protobuf on both ends. Counters and
fault hooks on the dev server's `agent_rpc` say what crossed the wire.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import structlog

from secret_agent.coder import AgentClient
from secret_agent.coder.agentgate import check_server_version
from secret_agent.coder.errors import (
    AgentProtocolError,
    AgentRPCStatusError,
    AgentTokenRejectedError,
)
from secret_agent.devserver import Limits, Store, ThreadedDevServer
from secret_agent.devserver.agentrpc import Fault
from secret_agent.errors import (
    CoderError,
    CoderResponseError,
    CoderUnreachableError,
    ConfigError,
    ServerError,
    UnauthorizedError,
)
from secret_agent.redact import Secret
from tests.e2e.daemon_harness import wait_until

CANARY = "canary-agentrpc-9e4f"
USER = "developer"
MAX_VALUE = 24 * 1024  # Coder's per-value cap


@dataclass
class AgentServer:
    """A dev server without inline values, one user, and that user's agent token."""

    server: ThreadedDevServer
    store: Store
    agent_token: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kw: object) -> AgentClient:
        return AgentClient(url=self.url, token=Secret(self.agent_token), **kw)  # type: ignore[arg-type]


@pytest.fixture
def agent_server() -> Iterator[AgentServer]:
    # Lifted caps: a manifest over 256 KiB, and a disabled secret beside 50 enabled ones.
    store = Store(
        limits=Limits(max_secrets=100, max_total_value_bytes=1 << 20, max_env_value_bytes=1 << 20)
    )
    store.add_user(USER)
    agent_token = store.issue_agent_token(USER)
    with ThreadedDevServer(store) as server:
        yield AgentServer(server=server, store=store, agent_token=agent_token)


def seed(store: Store, count: int, *, size: int = 0) -> dict[str, str]:
    """`count` secrets with env and file targets; their values by env_name."""
    values = {}
    for i in range(count):
        value = f"{CANARY}-{i:03d}-" + "v" * max(0, size - len(CANARY) - 5)
        store.create_secret(
            USER, name=f"s{i:03d}", value=value, env_name=f"S_{i:03d}", file_path=f"~/s/{i:03d}"
        )
        values[f"S_{i:03d}"] = value
    return values


def test_manifest_with_50_secrets_matches_the_store(agent_server: AgentServer) -> None:
    """All 50 secrets (Coder's cap) arrive with their targets and exact values, in name order."""
    values = seed(agent_server.store, 50)
    agent_server.store.create_secret(
        USER, name="zz-off", value=CANARY, env_name="OFF", enabled=False
    )
    with agent_server.client() as client:
        got = client.get_manifest_secrets()
    assert [s.env_name for s in got] == sorted(values)
    assert {s.env_name: s.value.reveal() for s in got} == values
    assert all(s.file_path == f"~/s/{s.env_name[2:]}" for s in got)
    assert agent_server.server.agent_rpc.dials == [("secret-agent", "2.0")]
    assert agent_server.server.agent_rpc.rpc_names == ["/coder.agent.v2.Agent/GetManifest"]


def test_manifest_over_256_kib_arrives_intact(agent_server: AgentServer) -> None:
    """20 values of ~24 KiB (~480 KiB) flow past the 256 KiB yamux window, byte for byte."""
    values = seed(agent_server.store, 20, size=MAX_VALUE)
    assert sum(len(v) for v in values.values()) > 256 * 1024
    with agent_server.client() as client:
        got = client.get_manifest_secrets()
    assert {s.env_name: s.value.reveal() for s in got} == values


def test_one_websocket_serves_many_calls(agent_server: AgentServer) -> None:
    """Five calls, one upgrade: each call is a new stream on the same session."""
    seed(agent_server.store, 3)
    rpc = agent_server.server.agent_rpc
    with agent_server.client() as client:
        for _ in range(5):
            assert len(client.get_manifest_secrets()) == 3
        assert client.calls == 5
        assert client.connections == 1
    assert rpc.connections == 1
    assert rpc.get_manifest_calls == 5
    assert len(rpc.dials) == 1


def test_server_pings_are_answered_between_calls(agent_server: AgentServer) -> None:
    """With no call in progress, the reader thread answers the server's yamux pings."""
    rpc = agent_server.server.agent_rpc
    with agent_server.client() as client:
        client.get_manifest_secrets()
        assert rpc.ping_all() == 1
        wait_until(lambda: rpc.pongs == 1, 5, "a pong")
        rpc.ping_all()
        wait_until(lambda: rpc.pongs == 2, 5, "a second pong")
        client.get_manifest_secrets()
        assert client.connections == 1


def test_keepalive_keeps_an_idle_session(agent_server: AgentServer) -> None:
    """coderd's keepalive (here every 50 ms, 1 s to answer) finds the idle client alive."""
    rpc = agent_server.server.agent_rpc
    rpc.ping_interval, rpc.ping_timeout = 0.05, 1.0
    with agent_server.client() as client:
        client.get_manifest_secrets()
        wait_until(lambda: rpc.pongs >= 5, 5, "five keepalive pongs")
        assert rpc.live_connections == 1
        client.get_manifest_secrets()
        assert client.connections == 1


def test_drop_mid_call_fails_it_then_the_next_call_reconnects(agent_server: AgentServer) -> None:
    """Half an answer then a closed socket: a retryable error; the next call dials anew."""
    values = seed(agent_server.store, 10, size=1000)
    rpc = agent_server.server.agent_rpc
    with agent_server.client() as client:
        client.get_manifest_secrets()
        rpc.fail_next(1, Fault.DROP)
        with pytest.raises(CoderUnreachableError, match="1011") as caught:
            client.get_manifest_secrets()
        assert caught.value.retryable
        got = client.get_manifest_secrets()
        assert {s.env_name: s.value.reveal() for s in got} == values
        assert client.connections == 2
    assert rpc.connections == 2


def test_connection_dropped_between_calls_is_replaced_silently(agent_server: AgentServer) -> None:
    """A session the server closed while idle is noticed; the next call just dials again."""
    rpc = agent_server.server.agent_rpc
    with agent_server.client() as client:
        client.get_manifest_secrets()
        assert rpc.drop_all() == 1
        wait_until(lambda: rpc.live_connections == 0, 5, "the drop")
        # The client's reader sees the close a moment after the server counts it.
        wait_until(lambda: not client.connected, 5, "the client noticing the drop")
        client.get_manifest_secrets()
        assert client.connections == 2


def test_go_away_fails_the_call_then_reconnects(agent_server: AgentServer) -> None:
    """GoAway(2) mid-call is a retryable protocol error naming GoAway; then a new session."""
    seed(agent_server.store, 2)
    with agent_server.client() as client:
        client.get_manifest_secrets()
        agent_server.server.agent_rpc.fail_next(1, Fault.GO_AWAY)
        with pytest.raises(AgentProtocolError, match=r"GoAway\(2\)") as caught:
            client.get_manifest_secrets()
        assert caught.value.retryable
        assert len(client.get_manifest_secrets()) == 2
        assert client.connections == 2


def test_server_shutdown_sends_go_away_and_a_restart_is_picked_up(
    agent_server: AgentServer,
) -> None:
    """A stopping server says GoAway(0); once back on its port, the next call reconnects."""
    seed(agent_server.store, 1)
    port = agent_server.server.port
    with agent_server.client() as client:
        client.get_manifest_secrets()
        agent_server.server.stop()
        with pytest.raises(CoderUnreachableError):
            client.get_manifest_secrets()
        with ThreadedDevServer(agent_server.store, port=port):
            assert len(client.get_manifest_secrets()) == 1
        assert client.connections == 2


def test_drpc_error_is_retryable_and_keeps_the_session(agent_server: AgentServer) -> None:
    """A drpc Error (code 0, a database hiccup) fails that call only; the session stays."""
    with agent_server.client() as client:
        client.get_manifest_secrets()
        agent_server.server.agent_rpc.fail_next(1, Fault.ERROR)
        with pytest.raises(AgentRPCStatusError, match="database unavailable") as caught:
            client.get_manifest_secrets()
        assert caught.value.retryable
        assert caught.value.code == 0
        client.get_manifest_secrets()
        assert client.connections == 1


def test_unknown_rpc_surfaces_as_a_clear_non_retryable_error(agent_server: AgentServer) -> None:
    """A server without GetManifest (a renamed service) answers 'unknown rpc', said plainly."""
    agent_server.server.agent_rpc.known_rpcs.clear()
    with agent_server.client() as client, pytest.raises(AgentRPCStatusError) as caught:
        client.get_manifest_secrets()
    assert 'unknown rpc: "/coder.agent.v2.Agent/GetManifest"' in str(caught.value)
    assert not caught.value.retryable


def test_stalled_answer_hits_the_call_deadline(agent_server: AgentServer) -> None:
    """A server that never answers costs one deadline, not a hang; then the client recovers."""
    with agent_server.client(timeout=0.5) as client:
        client.get_manifest_secrets()
        agent_server.server.agent_rpc.fail_next(1, Fault.STALL)
        start = time.monotonic()
        with pytest.raises(CoderUnreachableError, match="deadline"):
            client.get_manifest_secrets()
        assert time.monotonic() - start < 3
        client.get_manifest_secrets()
        assert client.connections == 2


@pytest.mark.parametrize(
    ("case", "token", "message"),
    [
        ("unknown-uuid", str(uuid.uuid4()), "Workspace agent not authorized."),
        ("not-a-uuid", f"{CANARY}-not-a-uuid", "Workspace agent token invalid."),
    ],
)
def test_wrong_agent_token_is_a_401_that_says_so(
    agent_server: AgentServer, case: str, token: str, message: str
) -> None:
    """A rejected agent token is an UnauthorizedError naming CODER_AGENT_TOKEN, not the token."""
    with (
        AgentClient(url=agent_server.url, token=Secret(token)) as client,
        pytest.raises(AgentTokenRejectedError) as caught,
    ):
        client.get_manifest_secrets()
    text = str(caught.value)
    assert isinstance(caught.value, UnauthorizedError), case
    assert caught.value.status == 401
    assert message in text
    assert "CODER_AGENT_TOKEN" in text
    assert token not in text
    assert agent_server.server.agent_rpc.dials == []


def test_session_token_is_not_an_agent_token(agent_server: AgentServer) -> None:
    """The user's session token does not open the agent RPC."""
    session = agent_server.store.issue_token(USER)
    with (
        AgentClient(url=agent_server.url, token=Secret(session)) as client,
        pytest.raises(AgentTokenRejectedError, match="token invalid"),
    ):
        client.get_manifest_secrets()


def test_incompatible_api_version_is_a_clear_non_retryable_error(agent_server: AgentServer) -> None:
    """A major version the server lacks gets coderd's 400, surfaced with its detail."""
    with (
        agent_server.client(api_version="3.0") as client,
        pytest.raises(AgentProtocolError) as caught,
    ):
        client.get_manifest_secrets()
    assert not caught.value.retryable
    assert "behind requested major version 3.0" in str(caught.value)


@pytest.mark.parametrize(
    ("version", "reason"), [("v2.30.4+abc", "older than v2.31"), ("v2.32.0", "need v2.33")]
)
def test_old_coder_is_refused_before_dialing(
    agent_server: AgentServer, version: str, reason: str
) -> None:
    """buildinfo below v2.33 stops the client before any upgrade (no false agent connects)."""
    agent_server.server.app.state.build_version = version
    with agent_server.client() as client, pytest.raises(AgentProtocolError, match=reason) as caught:
        client.get_manifest_secrets()
    assert not caught.value.retryable
    assert agent_server.server.agent_rpc.dials == []


def test_version_gate_accepts_current_and_source_builds() -> None:
    """v2.33+, later majors' minors and `v0.0.0-devel` builds pass; garbage does not."""
    for ok in ("v2.33.0", "v2.40.1-rc.1+abc", "v3.0.0", "v0.0.0-devel+1234"):
        check_server_version(ok)
    with pytest.raises(AgentProtocolError, match="cannot read"):
        check_server_version("banana")


class _CannedServer:
    """A loopback HTTP server: Coder's buildinfo, and one canned answer to the upgrade."""

    def __init__(self, status: int, body: bytes, ctype: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # websockets reads only HTTP/1.1 answers

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/api/v2/buildinfo":
                    code, data, kind = 200, b'{"version":"v2.33.1"}', "application/json"
                else:
                    code, data, kind = status, body, ctype
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(
    ("case", "status", "body", "ctype", "error", "text", "retryable"),
    [
        ("no-endpoint", 404, b'{"message":"Route not found."}', "application/json",
         AgentProtocolError, "no workspace agent RPC", False),
        ("proxy-html", 502, b"<html>Bad Gateway</html>", "text/html",
         CoderResponseError, "non-JSON body (text/html", True),
        ("server-error", 500, b'{"message":"Internal error checking workspace agent authorization."}',
         "application/json", ServerError, "HTTP 500", True),
    ],
)  # fmt: skip
def test_refused_upgrades_are_clear_errors(
    case: str, status: int, body: bytes, ctype: str, error: type, text: str, retryable: bool
) -> None:
    """An upgrade answered with a 404, an HTML page or a 500 is a typed error, never a hang."""
    canned = _CannedServer(status, body, ctype)
    try:
        with (
            AgentClient(url=canned.url, token=Secret(str(uuid.uuid4())), timeout=5) as client,
            pytest.raises(error) as caught,
        ):
            client.get_manifest_secrets()
    finally:
        canned.close()
    assert text in str(caught.value), case
    assert caught.value.retryable is retryable


def test_role_agent_is_refused() -> None:
    """The client can never claim to be the workspace agent itself."""
    for role in ("agent", ""):
        with pytest.raises(ValueError, match="role"):
            AgentClient(url="http://127.0.0.1:1", token=Secret(CANARY), role=role)


def test_close_stops_the_reader_thread_and_refuses_later_calls(agent_server: AgentServer) -> None:
    """After close no reader thread is left, the server sees the session end, calls fail."""
    client = agent_server.client()
    client.get_manifest_secrets()
    assert any(t.name == "secret-agent-rpc-reader" for t in threading.enumerate())
    client.close()
    assert not any(t.name == "secret-agent-rpc-reader" for t in threading.enumerate())
    wait_until(lambda: agent_server.server.agent_rpc.live_connections == 0, 5, "session end")
    with pytest.raises(CoderUnreachableError, match="closed"):
        client.get_manifest_secrets()


def test_no_value_in_logs_reprs_or_errors_at_debug(
    agent_server: AgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG, no value reaches a log record, a repr or an error."""
    values = seed(agent_server.store, 5, size=200)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with structlog.testing.capture_logs() as events, agent_server.client() as client:
        got = client.get_manifest_secrets()
        texts += [repr(client), repr(got), str(got)]
        for fault in (Fault.DROP, Fault.GO_AWAY, Fault.ERROR):
            agent_server.server.agent_rpc.fail_next(1, fault)
            with pytest.raises(CoderError) as caught:
                client.get_manifest_secrets()
            texts += [str(caught.value), repr(caught.value)]
    ours = [r for r in caplog.records if not r.name.startswith("uvicorn")]
    texts += [r.getMessage() for r in ours] + [json.dumps(e, default=str) for e in events]
    assert any(e["event"] == "agent_rpc_connected" for e in events)
    # websockets logs each frame's payload (elided, maybe as hex) at DEBUG: none at all.
    assert [r.getMessage() for r in ours if r.name == "secret_agent.agent_rpc"] == []
    for value in values.values():
        for text in texts:
            assert value not in text
            assert CANARY not in text


def test_seed_agent_tokens_are_loaded_checked_and_persisted(tmp_path: Path) -> None:
    """A seed's `agent_tokens` open the RPC for that user, survive a persist round trip,
    and a malformed one is refused naming the file and key."""
    token = str(uuid.uuid4())
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"users": [{"username": USER, "agent_tokens": [token]}]}))
    persist = tmp_path / "store.json"
    store = Store.from_seed(seed_file, persist_path=persist)
    user = store.user_for_agent_token(token.upper())  # any UUID spelling, as coderd parses it
    assert user is not None
    assert user.username == USER
    assert Store(persist_path=persist).agent_tokens(USER) == (token,)
    seed_file.write_text(json.dumps({"users": [{"username": USER, "agent_tokens": ["nope"]}]}))
    with pytest.raises(ConfigError, match=r"users\[0\].*UUID"):
        Store.from_seed(seed_file)
