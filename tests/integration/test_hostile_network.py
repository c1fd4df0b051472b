"""Both clients against hostile loopback servers: redirects, trickled answers, proxies.

product.md "Where values rest": neither client follows a redirect (it is reported as
one, naming the host it pointed to, and no token is sent there), and `coder.timeout`
bounds a whole request, so a server that trickles its answer is an error after that
time, not a hang. Every server here is a real socket on loopback; the host a
redirect points to is a second one that records whatever reaches it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from secret_agent.coder import AgentClient, CoderClient
from secret_agent.errors import CoderError, CoderResponseError, CoderUnreachableError
from secret_agent.redact import Secret
from tests.integration.hostile_servers import BUILDINFO, RawServer, Reply, raw_server, response

TOKEN = "sessiontoken-canary-4d2e-0123456789abcdef"
AGENT_TOKEN = "agenttoken-canary-51f3-9a8b7c6d5e4f"
RPC = "/api/v2/workspaceagents/me/rpc"
BUILDINFO_PATH = "/api/v2/buildinfo"
LIST = "/api/v2/users/me/secrets"
# A loaded 2-core CI machine may be slow, but never four seconds slow on loopback.
BOUND = 5.0


@pytest.fixture
def elsewhere() -> Iterator[RawServer]:
    """The host a redirect points to: it records every connection and request."""
    with raw_server(lambda _: Reply(response("404 Not Found", b'{"message":"nope"}'))) as srv:
        yield srv


def redirect(location: str, status: str = "302 Found") -> Reply:
    return Reply(response(status, b"", headers=f"Location: {location}\r\n", ctype="text/html"))


def by_path(routes: dict[str, Reply]) -> Callable[[str], Reply]:
    return lambda target: routes[target.split("?")[0]]


def assert_untouched(srv: RawServer) -> None:
    assert srv.connections == 0, f"a client reached the redirect's host: {srv.requests}"


class TestNoRedirectIsFollowed:
    def test_agent_rpc_upgrade_redirect_is_refused_and_the_token_stays(
        self, elsewhere: RawServer
    ) -> None:
        """A 302 to the upgrade is an error naming the other host, which gets nothing."""
        location = f"ws://127.0.0.1:{elsewhere.port}{RPC}?version=2.0&role=secret-agent"
        routes = {BUILDINFO_PATH: Reply(BUILDINFO), RPC: redirect(location)}
        with (
            raw_server(by_path(routes)) as coder,
            AgentClient(url=coder.url, token=Secret(AGENT_TOKEN), timeout=5) as client,
            pytest.raises(CoderError) as caught,
        ):
            client.get_manifest_secrets()
        assert_untouched(elsewhere)
        assert [seen.target.split("?")[0] for seen in coder.requests] == [BUILDINFO_PATH, RPC]
        text = str(caught.value)
        assert isinstance(caught.value, CoderResponseError), text
        assert f"GET {coder.url}{RPC} answered HTTP 302, a redirect to 127.0.0.1:" in text
        assert f"127.0.0.1:{elsewhere.port}" in text
        assert "never follows redirects" in text
        assert "CODER_AGENT_URL" in text
        assert AGENT_TOKEN not in text
        assert caught.value.retryable is False
        assert client.connections == 0

    @pytest.mark.parametrize(
        ("status", "location", "named"),
        [
            pytest.param(
                "302 Found",
                "http://127.0.0.1:{other}" + LIST,
                "127.0.0.1:{other}",
                id="302-absolute",
            ),
            pytest.param(
                "301 Moved Permanently", "http://127.0.0.1:{other}/", "127.0.0.1:{other}", id="301"
            ),
            pytest.param(
                "307 Temporary Redirect",
                "http://127.0.0.1:{other}" + LIST,
                "127.0.0.1:{other}",
                id="307",
            ),
            pytest.param(
                "308 Permanent Redirect",
                "//127.0.0.1:{other}/x",
                "127.0.0.1:{other}",
                id="308-scheme-relative",
            ),
            pytest.param(
                "302 Found", "/login?return_to=%2Fapi", "127.0.0.1:{coder}", id="relative-same-host"
            ),
            pytest.param(
                "303 See Other",
                "https://admin:hunter2-canary@sso.invalid/login?t=1",
                "sso.invalid",
                id="userinfo-dropped",
            ),
        ],
    )
    def test_rest_redirect_names_the_host_and_sends_nothing_there(
        self, elsewhere: RawServer, status: str, location: str, named: str
    ) -> None:
        """A 3xx to the secret list is an error that says "redirect" and names the host."""

        def answer(_: str) -> Reply:
            return redirect(location.format(other=elsewhere.port, coder=coder.port), status)

        with (
            raw_server(answer) as coder,
            CoderClient(url=coder.url, token=Secret(TOKEN), timeout=5) as client,
            pytest.raises(CoderError) as caught,
        ):
            client.list_secrets()
        assert_untouched(elsewhere)
        assert len(coder.requests) == 1
        text = str(caught.value)
        assert isinstance(caught.value, CoderResponseError), text
        code = status.split(maxsplit=1)[0]
        expected = named.format(other=elsewhere.port, coder=coder.port)
        assert f"GET {coder.url}{LIST} answered HTTP {code}, a redirect to {expected};" in text
        assert "never follows redirects" in text
        assert "coder.url" in text
        assert "hunter2" not in text
        assert "admin" not in text
        assert TOKEN not in text
        assert caught.value.status == int(code)
        assert caught.value.retryable is False

    def test_buildinfo_redirect_is_refused_before_any_dial(self, elsewhere: RawServer) -> None:
        """The agent's buildinfo GET does not follow a 302 either, and never dials."""
        location = f"http://127.0.0.1:{elsewhere.port}{BUILDINFO_PATH}"
        routes = {BUILDINFO_PATH: redirect(location), RPC: Reply(response("500 Oops"))}
        with (
            raw_server(by_path(routes)) as coder,
            AgentClient(url=coder.url, token=Secret(AGENT_TOKEN), timeout=5) as client,
            pytest.raises(CoderError) as caught,
        ):
            client.get_manifest_secrets()
        assert_untouched(elsewhere)
        assert [seen.target for seen in coder.requests] == [BUILDINFO_PATH]
        text = str(caught.value)
        assert isinstance(caught.value, CoderResponseError), text
        assert f"GET {coder.url}{BUILDINFO_PATH} answered HTTP 302, a redirect to" in text
        assert f"127.0.0.1:{elsewhere.port}" in text
        assert AGENT_TOKEN not in text
        assert caught.value.retryable is False


def trickled_headers(body: bytes = b"[]") -> Reply:
    return Reply(b"", response("200 OK", body))


def trickled_body(body: bytes) -> Reply:
    whole = response("200 OK", body)
    return Reply(whole[: -len(body)], body)


# ~70 bytes of headers, or a 60-byte body, at 0.2 s a byte: 12 s or more to answer.
SLOW_ROWS = [
    pytest.param(trickled_headers(), id="status-line-and-headers"),
    pytest.param(trickled_body(b"[" + b" " * 60 + b"]"), id="body"),
]


def timed(call: Callable[[], object], error: type[Exception]) -> tuple[Exception, float]:
    """Run `call`, which must raise `error`; the error and the seconds it took."""
    start = time.monotonic()
    with pytest.raises(error) as caught:
        call()
    return caught.value, time.monotonic() - start


VERSION = b'{"version":"v2.33.1"'
SLOW_BUILDINFO_ROWS = [
    pytest.param(trickled_headers(VERSION + b"}"), id="status-line-and-headers"),
    pytest.param(trickled_body(VERSION + b" " * 60 + b"}"), id="body"),
]


class TestTimeoutBoundsTheWholeRequest:
    @pytest.mark.parametrize("reply", SLOW_ROWS)
    def test_rest_request_against_a_trickle_ends_at_the_timeout(self, reply: Reply) -> None:
        """One byte every 0.2 s, with timeout=1s: CoderUnreachableError after about 1 s."""
        with (
            raw_server(lambda _: reply) as srv,
            CoderClient(url=srv.url, token=Secret(TOKEN), timeout=1) as client,
        ):
            exc, took = timed(client.list_secrets, CoderUnreachableError)
        assert 0.9 <= took < BOUND, took
        text = str(exc)
        assert f"GET {srv.url}{LIST}: no complete answer within 1s" in text
        assert TOKEN not in text
        assert exc.retryable  # type: ignore[attr-defined]

    @pytest.mark.parametrize("reply", SLOW_BUILDINFO_ROWS)
    def test_buildinfo_against_a_trickle_ends_at_the_deadline(self, reply: Reply) -> None:
        """The agent's buildinfo GET is bounded by the call's deadline as a whole."""
        routes = {BUILDINFO_PATH: reply, RPC: Reply(response("500 Oops"))}
        with (
            raw_server(by_path(routes)) as srv,
            AgentClient(url=srv.url, token=Secret(AGENT_TOKEN), timeout=1) as client,
        ):
            exc, took = timed(client.get_manifest_secrets, CoderUnreachableError)
            assert [seen.target for seen in srv.requests] == [BUILDINFO_PATH]
        assert 0.9 <= took < BOUND, took
        assert f"GET {srv.url}{BUILDINFO_PATH}: no complete answer within 1s" in str(exc)

    def test_websocket_upgrade_against_a_trickle_ends_at_the_deadline(self) -> None:
        """A 101 answer trickled byte by byte is bounded by the call's deadline too."""
        upgrade = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
        )
        routes = {BUILDINFO_PATH: Reply(BUILDINFO), RPC: Reply(b"", upgrade)}
        with (
            raw_server(by_path(routes)) as srv,
            AgentClient(url=srv.url, token=Secret(AGENT_TOKEN), timeout=1) as client,
        ):
            exc, took = timed(client.get_manifest_secrets, CoderUnreachableError)
        assert 0.9 <= took < BOUND, took
        assert f"GET {srv.url}{RPC}: no complete answer within 1s" in str(exc)
        assert AGENT_TOKEN not in str(exc)

    def test_the_deadline_is_per_request_and_the_connection_is_reused(self) -> None:
        """Three answers of 0.4 s each (1.2 s in all) pass a 1 s timeout on one connection."""
        with (
            raw_server(lambda _: trickled_body(b"[]")) as srv,
            CoderClient(url=srv.url, token=Secret(TOKEN), timeout=1) as client,
        ):
            start = time.monotonic()
            for _ in range(3):
                assert client.list_secrets() == []
            assert time.monotonic() - start > 1.0  # more than one timeout in all
            assert client.requests == 3
            assert len(srv.requests) == 3
            assert srv.connections == 1
            assert all(seen.headers["coder-session-token"] == TOKEN for seen in srv.requests)

    def test_a_silent_server_is_still_no_answer_at_all(self) -> None:
        """A server that accepts and never writes: "no answer within", not a partial one."""
        with (
            raw_server(lambda _: Reply(b"", b"")) as srv,
            CoderClient(url=srv.url, token=None, timeout=0.5) as client,
        ):
            exc, took = timed(client.list_secrets, CoderUnreachableError)
        assert took < BOUND
        assert f"GET {srv.url}{LIST}: no answer within 0.5s" in str(exc)


def test_an_environment_proxy_is_still_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY from the environment carries the request, as httpx does by default."""
    with raw_server(lambda _: Reply(response("200 OK", b"[]"))) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with CoderClient(url="http://coder.invalid", token=Secret(TOKEN), timeout=5) as client:
            assert client.list_secrets() == []
        assert [seen.target for seen in proxy.requests] == [f"http://coder.invalid{LIST}"]
