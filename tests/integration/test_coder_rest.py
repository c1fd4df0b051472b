"""The REST client against the real dev server, and against hostile raw answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from secret_agent.coder import CoderClient
from secret_agent.errors import (
    CoderAPIError,
    CoderResponseError,
    CoderUnreachableError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)
from secret_agent.redact import Secret
from tests.conftest import DevServer

CANARY = "canary-rest-5b1d"


def client(server: DevServer, **kw: object) -> CoderClient:
    return CoderClient(url=server.url, token=Secret(server.token), **kw)  # type: ignore[arg-type]


class TestAgainstDevServer:
    def test_five_endpoints_round_trip(self, dev_server: DevServer) -> None:
        """Create, list, get (with the inline value), patch and delete all work."""
        with client(dev_server) as c:
            created = c.create_secret(
                name="my token", value=Secret(CANARY), env_name="MY_TOKEN", description="d"
            )
            assert created.name == "my token"
            assert [m.name for m in c.list_secrets()] == ["my token"]
            meta, value = c.get_secret("my token")
            assert value == Secret(CANARY)
            assert meta.env_name == "MY_TOKEN"
            updated = c.update_secret("my token", file_path="~/t")
            assert updated.file_path == "~/t"
            assert updated.env_name == "MY_TOKEN"  # partial PATCH leaves the rest
            cleared = c.update_secret("my token", env_name="")
            assert cleared.env_name == ""
            assert cleared.updated_at > meta.updated_at
            c.delete_secret("my token")
            assert c.list_secrets() == []
            assert c.requests == 7

    def test_user_by_name_works_like_me(self, dev_server: DevServer) -> None:
        """`{user}` may be the username."""
        with client(dev_server) as me, client(dev_server, user="developer") as named:
            me.create_secret(name="x", value=Secret(CANARY), env_name="X")
            assert [m.name for m in named.list_secrets()] == ["x"]

    def test_errors_carry_coder_message_and_validations(self, dev_server: DevServer) -> None:
        """409 and 400 bodies become typed errors with Coder's fields; no value in them."""
        with client(dev_server) as c:
            c.create_secret(name="dup", value=Secret(CANARY), env_name="DUP")
            with pytest.raises(ConflictError) as conflict:
                c.create_secret(name="dup", value=Secret(CANARY), env_name="OTHER")
            assert conflict.value.status == 409
            assert conflict.value.validations[0].field == "name"
            with pytest.raises(CoderAPIError) as invalid:
                c.create_secret(name="bad", value=Secret(CANARY), env_name="PATH")
            assert invalid.value.status == 400
            assert any(v.field == "env_name" for v in invalid.value.validations)
            assert not invalid.value.retryable
            with pytest.raises(NotFoundError):
                c.get_secret("nope")
            for exc in (conflict.value, invalid.value):
                assert CANARY not in str(exc)

    def test_wrong_token_is_unauthorized_with_a_hint(self, dev_server: DevServer) -> None:
        """401 says plainly that the session token is the problem; the token is not shown."""
        bad = "badtoken-0123456789-abcdefghijklmnopqrstuvwx"
        with (
            CoderClient(url=dev_server.url, token=Secret(bad)) as c,
            pytest.raises(UnauthorizedError) as exc,
        ):
            c.list_secrets()
        assert "session token" in str(exc.value)
        assert bad not in str(exc.value)
        assert not exc.value.retryable


@contextmanager
def canned(response: bytes, *, close_early: bool = False) -> Iterator[str]:
    """A loopback TCP server answering every connection with `response` bytes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(response)
                if close_early:
                    conn.shutdown(socket.SHUT_RDWR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        srv.close()


def http(
    status: str,
    body: bytes,
    ctype: str = "application/json",
    extra: str = "",
    length: int | None = None,
) -> bytes:
    n = len(body) if length is None else length
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {n}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

ERROR_ROWS = [
    pytest.param(
        http(
            "401 Unauthorized", b'{"message":"You are signed out.","detail":"API key is invalid."}'
        ),
        UnauthorizedError,
        False,
        id="401",
    ),
    pytest.param(
        http("403 Forbidden", b'{"message":"Forbidden."}'), ForbiddenError, False, id="403"
    ),
    pytest.param(
        http("404 Not Found", b'{"message":"Resource not found"}'), NotFoundError, False, id="404"
    ),
    pytest.param(
        http(
            "409 Conflict",
            b'{"message":"Validation failed.","validations":'
            b'[{"field":"name","detail":"name already in use"}]}',
        ),
        ConflictError,
        False,
        id="409",
    ),
    pytest.param(
        http(
            "429 Too Many Requests",
            b'{"message":"You\'ve been rate limited."}',
            extra="Retry-After: 7\r\n",
        ),
        RateLimitedError,
        True,
        id="429",
    ),
    pytest.param(
        http(
            "500 Internal Server Error",
            b'{"message":"Internal error listing secrets.","detail":"db down"}',
        ),
        ServerError,
        True,
        id="500",
    ),
    pytest.param(
        http("503 Service Unavailable", b'{"message":"busy"}', extra="Retry-After: 3\r\n"),
        ServerError,
        True,
        id="503",
    ),
    pytest.param(http("502 Bad Gateway", HTML_502, "text/html"), ServerError, True, id="html-502"),
    pytest.param(
        http("200 OK", HTML_502, "text/html"), CoderResponseError, True, id="html-200-login-page"
    ),
    pytest.param(
        http("200 OK", b'[{"name": "a", "upd'), CoderResponseError, True, id="truncated-json"
    ),
    pytest.param(
        http("200 OK", b'[{"name": "a", "upd', length=200),
        CoderResponseError,
        True,
        id="connection-cut-mid-body",
    ),
    pytest.param(http("200 OK", b'{"name": "a"}'), CoderResponseError, True, id="object-not-list"),
    pytest.param(http("200 OK", b'[{"name": 5}]'), CoderResponseError, True, id="wrong-type"),
    pytest.param(
        http("200 OK", b'[{"env_name": "X"}]'), CoderResponseError, True, id="missing-name"
    ),
    pytest.param(
        http("200 OK", b"", length=5 * 1024 * 1024), CoderResponseError, True, id="over-4MiB"
    ),
]


@pytest.mark.parametrize(("raw", "error", "retryable"), ERROR_ROWS)
def test_status_and_body_map_to_typed_errors(
    raw: bytes, error: type[Exception], retryable: bool
) -> None:
    """Each status class and each broken body becomes its own typed, explained error."""
    with (
        canned(raw, close_early=True) as url,
        CoderClient(url=url, token=Secret("t0ken-canary-99"), timeout=5) as c,
        pytest.raises(error) as exc,
    ):
        c.list_secrets()
    assert exc.type is error
    assert exc.value.retryable is retryable  # type: ignore[attr-defined]
    assert "t0ken-canary-99" not in str(exc.value)


def test_retry_after_and_html_are_explained() -> None:
    """429 carries Retry-After seconds; an HTML 502 is named as a proxy page."""
    raw = http("429 Too Many Requests", b'{"message":"slow down"}', extra="Retry-After: 7\r\n")
    with (
        canned(raw) as url,
        CoderClient(url=url, token=None) as c,
        pytest.raises(RateLimitedError) as limited,
    ):
        c.list_secrets()
    assert limited.value.retry_after == 7.0
    with (
        canned(http("502 Bad Gateway", HTML_502, "text/html")) as url,
        CoderClient(url=url, token=None) as c,
        pytest.raises(ServerError) as html,
    ):
        c.list_secrets()
    assert "HTML page" in str(html.value)
    assert html.value.status == 502


def test_connection_refused_and_timeout_are_unreachable() -> None:
    """No listener, or a listener that never answers, is CoderUnreachableError (retryable)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with (
        CoderClient(url=f"http://127.0.0.1:{port}", token=None) as c,
        pytest.raises(CoderUnreachableError) as refused,
    ):
        c.list_secrets()
    assert refused.value.retryable
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        with (
            CoderClient(
                url=f"http://127.0.0.1:{silent.getsockname()[1]}", token=None, timeout=0.3
            ) as c,
            pytest.raises(CoderUnreachableError) as timeout,
        ):
            c.list_secrets()
        assert "no answer within 0.3s" in str(timeout.value)
    finally:
        silent.close()
