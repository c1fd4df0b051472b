"""The workspace agent RPC client: `GetManifest`, the one way Coder hands out secret values.

`docs/agent-rpc.md` is the wire reference. A call goes
`GET {url}/api/v2/workspaceagents/me/rpc?version=2.0&role=secret-agent` (the agent token
in the `Coder-Session-Token` header) -> WebSocket (binary, no compression) -> yamux
client session -> one drpc unary call per yamux stream -> the Manifest protobuf,
of which only field 19 (the secrets) is kept.

Behaviour:
- One connection is reused across calls: a poll costs one stream, not an upgrade.
  `agentconn.AgentConnection` owns the reader thread that answers coderd's pings
  between polls. A connection that ended (closed, GoAway, protocol error, deadline)
  is dropped, and the next call dials a new one; nothing here retries or sleeps: the
  errors say `retryable`, and the daemon's backoff decides when to call again.
- Before the first dial, `GET /api/v2/buildinfo` (unauthenticated) gates the server
  version (`agentgate.check_server_version`, §7.1): below v2.31 Coder ignores `role`
  and would record our connection as the real agent's; below v2.33 there are no user
  secrets. An upgrade answered with an HTTP error becomes `agentgate.refusal`.
- Every call has one overall deadline (`timeout`, 30 s by default) covering buildinfo
  (as a whole: `deadline.DeadlineTransport`), the upgrade and the answer, so a server
  that trickles its answer is an error at the deadline, not a hang.
- No redirect is followed, by buildinfo or by the upgrade: websockets >= 17.1 would
  follow one and keep `Coder-Session-Token` across origins. `CoderRedirectError` names
  the host it pointed to instead.
- `role` is never `agent` or empty, so coderd skips its connection monitoring.

Secret hygiene: connects and disconnects are logged (URL, versions, role, the reason),
and nothing logs, reprs or raises payload bytes, values or the token. websockets logs
every frame with its payload at DEBUG, so it gets a logger that never enables DEBUG.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from typing import Final
from urllib.parse import urlencode, urlsplit

import httpx
import structlog
from websockets.datastructures import HeadersLike
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.http11 import USER_AGENT as WEBSOCKETS_USER_AGENT
from websockets.sync.client import ClientConnection, connect

from secret_agent.coder.agentconn import AgentConnection
from secret_agent.coder.agentgate import RPC_PATH, check_server_version, json_object, refusal
from secret_agent.coder.deadline import (
    DeadlineTransport,
    RequestDeadline,
    environment_proxy,
    ssl_context_for,
)
from secret_agent.coder.errors import (
    AgentProtocolError,
    AgentRPCStatusError,
    CoderRedirectError,
)
from secret_agent.coder.manifest import (
    GET_MANIFEST_RPC,
    ManifestSecret,
    decode_manifest_secrets,
    encode_get_manifest_request,
)
from secret_agent.coder.rest import TOKEN_HEADER, USER_AGENT
from secret_agent.errors import (
    CoderError,
    CoderResponseError,
    CoderUnreachableError,
    ServerError,
)
from secret_agent.redact import Secret

log = structlog.get_logger()

BUILDINFO_PATH: Final = "/api/v2/buildinfo"
# 2.0 has GetManifest, and every server accepts it until a major bump (§1.2).
API_VERSION: Final = "2.0"
ROLE: Final = "secret-agent"
DEFAULT_TIMEOUT: Final = 30.0
# drpc's 4 MiB packet cap plus framing: the largest message a server may send (§1.4).
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024 + 64
# A server that does not answer our close frame is not worth waiting for.
CLOSE_TIMEOUT: Final = 2.0
_MAX_BUILDINFO_BYTES: Final = 64 * 1024
# What a redirect's message tells the user to fix (sync dials coder.url when
# CODER_AGENT_URL is unset).
URL_SETTING: Final = "CODER_AGENT_URL (or coder.url)"


class _NoDebugLogger(logging.LoggerAdapter[logging.Logger]):
    """Hands websockets a logger whose DEBUG (and INFO) is off: its frame logs show payload."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


class _RedirectedError(Exception):
    """The upgrade was answered with a 3xx (status and Location): never followed."""

    def __init__(self, status: int, location: str | None) -> None:
        self.status = status
        self.location = location
        super().__init__(f"HTTP {status}")


class _NoRedirectConnection(ClientConnection):
    """Turns a 3xx answer to the upgrade into `_RedirectedError` inside the handshake.

    websockets >= 17.1 follows redirects (`process_redirect`) and strips only
    Authorization, Cookie and Proxy-Authorization across origins, so our token header
    would go along. It follows only an `InvalidStatus`, and raises anything else as it
    is, so this works the same on every version from the pinned minimum on (before
    17.1 websockets never followed one).
    """

    def handshake(
        self,
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = WEBSOCKETS_USER_AGENT,
        timeout: float | None = None,
    ) -> None:
        try:
            super().handshake(additional_headers, user_agent_header, timeout)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 300 <= status < 400:
                raise _RedirectedError(status, exc.response.headers.get("Location")) from None
            raise


def base_url(url: str) -> str:
    """`scheme://host[:port]` of a Coder URL: the API lives at the host root (§1.1).

    Raises:
        ValueError: not an http or https URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("the agent URL must be an http:// or https:// URL with a host")
    return f"{parts.scheme}://{parts.netloc}"


class AgentClient:
    """Calls the workspace agent RPC's `GetManifest` with a workspace agent token.

    `calls` counts GetManifest round trips and `connections` counts WebSockets opened,
    so callers can report (and tests and benchmarks assert) what a poll cost.
    `server_version` is Coder's, from buildinfo, once known. Thread-safe: calls are
    serialised; `close` may come from another thread and ends a call in progress.
    """

    def __init__(
        self,
        *,
        url: str,
        token: Secret,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str = "",
        api_version: str = API_VERSION,
        role: str = ROLE,
    ) -> None:
        """Args:
        url: Coder's access URL (`CODER_AGENT_URL`); any sub-path is dropped.
        token: the workspace agent token (`CODER_AGENT_TOKEN`).
        timeout: the overall deadline of one call, in seconds.
        ca_file: a PEM bundle to verify TLS with instead of the system store.

        Raises:
            ValueError: a URL that is not http(s), or the role `agent` or "".
        """
        if role in ("", "agent"):
            raise ValueError("the role must not be 'agent' or empty (coderd would monitor us)")
        self.url = base_url(url)
        self.calls = 0
        self.connections = 0
        self.server_version = ""
        self._token = token
        self._timeout = timeout
        self._api_version = api_version
        self._role = role
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._call_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._conn: AgentConnection | None = None
        self._closed = False
        self._ws_logger = _NoDebugLogger(logging.getLogger("secret_agent.agent_rpc"), {})

    def __repr__(self) -> str:
        return f"AgentClient(url={self.url!r}, role={self._role!r})"

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (and its reader thread); later calls are refused."""
        with self._state_lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def connected(self) -> bool:
        """Whether an open, usable connection is waiting for the next call."""
        conn = self._conn
        return conn is not None and conn.usable

    def get_manifest_secrets(self) -> tuple[ManifestSecret, ...]:
        """One `GetManifest`: every secret the manifest carries, in server order.

        Reuses the open connection, or dials one (after the buildinfo check, once).

        Raises:
            AgentTokenRejectedError: the agent token was refused (401/403).
            AgentProtocolError: a server too old, an incompatible API version, no RPC
                endpoint (all not retryable), or broken framing or GoAway (retryable).
            AgentRPCStatusError: the server failed the call (drpc Error packet).
            ManifestError: the Manifest cannot be decoded.
            CoderUnreachableError: connect, TLS, a dropped connection or the deadline.
            CoderAPIError, CoderResponseError: any other refusal of the upgrade.
        """
        deadline = time.monotonic() + self._timeout
        with self._call_lock:
            conn = self._connection(deadline)
            self.calls += 1
            try:
                data = conn.call(GET_MANIFEST_RPC, encode_get_manifest_request(), deadline=deadline)
            except AgentRPCStatusError:
                raise  # the server answered; the session itself is fine
            except CoderError as exc:
                self._drop(conn, exc)
                raise
        return decode_manifest_secrets(data)

    # -- connecting ------------------------------------------------------------

    def _connection(self, deadline: float) -> AgentConnection:
        with self._state_lock:
            if self._closed:
                raise CoderUnreachableError("the agent RPC client is closed")
            conn = self._conn
        if conn is not None and conn.usable:
            return conn
        if conn is not None:
            self._drop(conn, conn.ended or AgentProtocolError("the server sent GoAway"))
        conn = self._dial(deadline)
        with self._state_lock:
            if self._closed:
                conn.close()
                raise CoderUnreachableError("the agent RPC client is closed")
            self._conn = conn
        return conn

    def _drop(self, conn: AgentConnection, why: CoderError) -> None:
        with self._state_lock:
            if self._conn is conn:
                self._conn = None
        conn.close()
        log.info("agent_rpc_disconnected", url=self.url, reason=str(why))

    def _dial(self, deadline: float) -> AgentConnection:
        if not self.server_version:
            version = self._fetch_server_version(deadline)
            check_server_version(version)
            self.server_version = version
        query = urlencode({"version": self._api_version, "role": self._role})
        scheme = "wss" if self.url.startswith("https:") else "ws"
        uri = f"{scheme}://{urlsplit(self.url).netloc}{RPC_PATH}?{query}"
        try:
            # Entered as a context manager, as websockets >= 17.1 asks; the connection
            # outlives this call, and `AgentConnection.close` closes it.
            ws = connect(
                uri,
                additional_headers={TOKEN_HEADER: self._token.reveal()},
                user_agent_header=USER_AGENT,
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=_remaining(deadline, "the agent RPC upgrade"),
                close_timeout=CLOSE_TIMEOUT,
                ssl=self._ssl if scheme == "wss" else None,
                logger=self._ws_logger,
                create_connection=_NoRedirectConnection,
            ).__enter__()
        except _RedirectedError as exc:
            raise CoderRedirectError(
                method="GET",
                url=f"{self.url}{RPC_PATH}",
                status=exc.status,
                location=exc.location,
                setting=URL_SETTING,
            ) from None
        except InvalidStatus as exc:
            answer = exc.response
            raise refusal(
                answer.status_code, answer.headers, answer.body, api_version=self._api_version
            ) from None
        except WebSocketException as exc:
            raise CoderResponseError(
                f"GET {self.url}{RPC_PATH}: not a WebSocket upgrade ({type(exc).__name__}: {exc})"
            ) from None
        except TimeoutError as exc:  # websockets' one deadline: connect, TLS, handshake
            raise CoderUnreachableError(
                f"GET {self.url}{RPC_PATH}: no complete answer within {self._timeout:g}s ({exc})"
            ) from exc
        except OSError as exc:  # refused, DNS, TLS
            raise CoderUnreachableError(
                f"GET {self.url}{RPC_PATH}: cannot reach Coder ({type(exc).__name__}: {exc})"
            ) from exc
        self.connections += 1
        log.info(
            "agent_rpc_connected",
            url=self.url,
            server_version=self.server_version,
            api_version=self._api_version,
            role=self._role,
        )
        return AgentConnection(ws)

    def _fetch_server_version(self, deadline: float) -> str:
        """Coder's version from `/api/v2/buildinfo`.

        Raises:
            CoderUnreachableError, ServerError, CoderResponseError, AgentProtocolError.
        """
        url = self.url + BUILDINFO_PATH
        timeout = _remaining(deadline, "buildinfo")
        bound = RequestDeadline()
        transport = DeadlineTransport(
            deadline=bound,
            ssl_context=ssl_context_for(url, self._ssl or True),
            proxy=environment_proxy(url),
        )
        try:
            with (
                bound.bound(timeout) as budget,
                httpx.Client(transport=transport, timeout=timeout, follow_redirects=False) as http,
                http.stream("GET", url, headers={"User-Agent": USER_AGENT}) as resp,
            ):
                raw = b""
                for chunk in resp.iter_bytes():
                    raw += chunk
                    if len(raw) > _MAX_BUILDINFO_BYTES:
                        raise CoderResponseError(f"GET {url}: an oversized answer")
        except httpx.TimeoutException as exc:
            raise CoderUnreachableError(f"GET {url}: {budget.overrun(self._timeout)}") from exc
        except httpx.TransportError as exc:
            raise CoderUnreachableError(
                f"GET {url}: cannot reach Coder ({type(exc).__name__}: {exc})"
            ) from exc
        if 300 <= resp.status_code < 400:
            raise CoderRedirectError(
                method="GET",
                url=url,
                status=resp.status_code,
                location=resp.headers.get("location"),
                setting=URL_SETTING,
            )
        if resp.status_code != 200:
            if resp.status_code == 429 or resp.status_code >= 500:
                raise ServerError(status=resp.status_code, message=f"GET {url} failed")
            raise AgentProtocolError(
                f"GET {url} answered HTTP {resp.status_code}: is this a Coder deployment?",
                retryable=False,
            )
        doc = json_object(raw)
        version = doc.get("version") if doc is not None else None
        if not isinstance(version, str):
            raise CoderResponseError(f"GET {url}: no version string in the answer")
        return version


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise CoderUnreachableError(f"agent RPC: the deadline passed before {what}")
    return left
