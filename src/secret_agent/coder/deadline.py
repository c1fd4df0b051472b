"""One deadline for a whole HTTP request (connect, headers and body), for httpx.

Why: httpx's timeouts bound each socket operation, not a request. A server that sends
one byte a second, in its headers or in its body, never lets a read time out, and the
request never ends. `coder.timeout` must bound the whole request (README "Where values
rest"), so every socket operation here waits at most the time left before the
deadline of the request in progress.

How, with public httpx and httpcore API only:

- `RequestDeadline.bound(seconds)` opens the deadline of one request on this thread,
  around sending it *and* reading its body (httpx reads the body after the transport
  returns), and yields the `Budget` that counts the bytes received.
- `DeadlineTransport` is an httpx transport over an httpcore connection pool whose
  network backend wraps every stream: each connect, TLS handshake, read and write
  gets `min(its own timeout, time left)`, and none starts once the deadline passed
  (httpcore's timeout exceptions, which the transport maps to httpx's as httpx does).
- The pool is one per transport, so connections are reused across requests: the
  daemon's steady state stays one request per poll on one connection.

A custom transport turns off httpx's own reading of `HTTP(S)_PROXY`/`NO_PROXY`, so the
transport picks the proxy from the same variables itself (`environment_proxy`).

Nothing here logs or puts a header, a body byte or a token into a message.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore
import httpx

# Writes go out in pieces so that each waits at most the time left (a peer that reads
# slowly cannot stretch one large send past the deadline).
_WRITE_PIECE: Final = 16 * 1024


@dataclass(slots=True)
class Budget:
    """The deadline of one request (a `time.monotonic()` value) and what came so far."""

    until: float
    received: int = 0

    def cap(self, timeout: float | None, error: type[Exception]) -> float:
        """`timeout` shortened to the time left; `error` once none is left."""
        left = self.until - time.monotonic()
        if left <= 0:
            raise error("the request's deadline passed")
        return left if timeout is None else min(timeout, left)

    def overrun(self, seconds: float) -> str:
        """What to say when the deadline passed: whether anything arrived at all."""
        if not self.received:
            return f"no answer within {seconds:g}s"
        return f"no complete answer within {seconds:g}s (it sent {self.received} bytes, too slowly)"


class RequestDeadline:
    """The deadline of the request in progress, one per thread, for one client's streams."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def bound(self, seconds: float) -> Iterator[Budget]:
        """Every socket operation of this thread ends within `seconds` from now."""
        budget = Budget(until=time.monotonic() + seconds)
        self._local.budget = budget
        try:
            yield budget
        finally:
            self._local.budget = None

    def current(self) -> Budget | None:
        budget: Budget | None = getattr(self._local, "budget", None)
        return budget


class _Stream(httpcore.NetworkStream):
    """A network stream whose every operation waits at most the request's time left."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: RequestDeadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def _cap(self, timeout: float | None, error: type[Exception]) -> float | None:
        budget = self._deadline.current()
        return timeout if budget is None else budget.cap(timeout, error)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, self._cap(timeout, httpcore.ReadTimeout))
        budget = self._deadline.current()
        if budget is not None:
            budget.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_PIECE):
            piece = buffer[start : start + _WRITE_PIECE]
            self._inner.write(piece, self._cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        capped = self._cap(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, capped), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's own sync backend, with every stream it opens wrapped in `_Stream`."""

    def __init__(self, deadline: RequestDeadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def _cap(self, timeout: float | None) -> float | None:
        budget = self._deadline.current()
        return timeout if budget is None else budget.cap(timeout, httpcore.ConnectTimeout)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host,
            port,
            timeout=self._cap(timeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _Stream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, timeout=self._cap(timeout), socket_options=socket_options
        )
        return _Stream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's errors as httpx's, most specific first (what httpx's own transport does).
_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def environment_proxy(url: str) -> str | None:
    """The proxy `HTTP(S)_PROXY`/`ALL_PROXY` give for `url`, unless `NO_PROXY` exempts it."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxy


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport whose requests each end within the time `deadline` gives them.

    Args:
        deadline: whose `bound()` the caller opens around each request and its body.
        ssl_context: for https (None: plain http only, or httpcore's default).
        proxy: a proxy URL (http, https, socks5), or None to connect directly.
    """

    def __init__(
        self,
        *,
        deadline: RequestDeadline,
        ssl_context: ssl.SSLContext | None,
        proxy: str | None = None,
    ) -> None:
        backend = _Backend(deadline)
        self._pool: httpcore.ConnectionPool
        if proxy is None:
            self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=backend)
            return
        via = httpx.Proxy(proxy)
        url = httpcore.URL(
            scheme=via.url.raw_scheme,
            host=via.url.raw_host,
            port=via.url.port,
            target=via.url.raw_path,
        )
        if via.url.scheme.startswith("socks"):
            self._pool = httpcore.SOCKSProxy(
                proxy_url=url,
                proxy_auth=via.raw_auth,
                ssl_context=ssl_context,
                network_backend=backend,
            )
        else:
            self._pool = httpcore.HTTPProxy(
                proxy_url=url,
                proxy_auth=via.raw_auth,
                proxy_headers=via.headers.raw,
                ssl_context=ssl_context,
                network_backend=backend,
            )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("DeadlineTransport sends sync requests only")
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            answer = self._pool.handle_request(core)
        if not isinstance(answer.stream, Iterable):
            raise TypeError("httpcore's sync pool answered with an async stream")
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def ssl_context_for(url: str, verify: ssl.SSLContext | bool) -> ssl.SSLContext | None:
    """The TLS context for `url`: `verify` itself, httpx's default (certifi, or
    `SSL_CERT_FILE`/`SSL_CERT_DIR`), or None for plain http (loading a CA store costs
    ~40 ms and plain http has nothing to verify)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if not url.startswith("https:"):
        return None
    return httpx.create_ssl_context(verify=verify)
