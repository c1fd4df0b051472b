"""The dev server's side of the workspace agent RPC: `GetManifest` over yamux and drpc.

Emulates coderd's `GET /api/v2/workspaceagents/me/rpc` (`docs/agent-rpc.md`,
checklist §8) so the `agent` value source runs end to end without Coder:

1. The door (`AgentRPC.admit`), in coderd's order: the agent token from the cookie,
   the query or the `Coder-Session-Token` header (401s with coderd's texts for
   missing, non-UUID and unknown tokens), then the `version` query (default 2.0,
   checked against `current_version` as §1.2 says, 400 naming `version`). Refusals
   are HTTP answers before the upgrade. `role` and `version` are recorded.
2. After the upgrade, a yamux *server* session: any split of the client's bytes is
   fine; frames go out as Go sends them (a Data frame's header and body as two
   messages); the client's window is honoured, so a manifest over 256 KiB flows
   only as the client grants window; pings are answered, and sent every
   `ping_interval` seconds (coderd's 30 s), ending the session when no pong comes
   within `ping_timeout`.
3. drpc on each client stream: an unknown RPC gets an Error packet (code 0,
   `protocol error: unknown rpc: "<name>"`) right after its Invoke; `GetManifest`
   gets the user's *enabled* secrets in a Manifest with realistic unknown fields,
   then CloseSend as a separate write; the stream's FIN is answered with one FIN.
4. On shutdown, GoAway(0) and a close (1001) to every live connection.

Test hooks, thread-safe: `get_manifest_calls`, `connections`, `pongs`, `dials`
(role, version), `rpc_names`; `fail_next(n, fault)` (drop mid-answer, GoAway,
drpc error, stall); `drop_all()`; `ping_all()`; `known_rpcs`; `current_version`.
Nothing is logged and no value appears in any error.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from secret_agent.coder import drpc, yamux
from secret_agent.coder.errors import AgentRPCError, ManifestError
from secret_agent.coder.manifest import (
    GET_MANIFEST_RPC,
    decode_get_manifest_request,
    encode_manifest,
)
from secret_agent.devserver import validation
from secret_agent.devserver.records import TOKEN_COOKIE, TOKEN_HEADER, StoreError, User
from secret_agent.devserver.store import Store
from secret_agent.errors import Validation

PATH: Final = "/api/v2/workspaceagents/me/rpc"
CURRENT_VERSION: Final = (2, 11)
PING_INTERVAL: Final = 30.0
PING_TIMEOUT: Final = 10.0
NO_TOKEN: Final = 'Cookie "coder_session_token" must be provided.'  # noqa: S105 - a message
TOKEN_INVALID: Final = "Workspace agent token invalid."  # noqa: S105 - a message
NOT_AUTHORIZED: Final = "Workspace agent not authorized."
NOT_AUTHORIZED_DETAIL: Final = (
    "The agent cannot authenticate until the workspace provision job has been completed."
    " If the job is no longer running, this agent is invalid."
)
BAD_VERSION: Final = "Unknown or unsupported API version"
FAULT_ERROR_TEXT: Final = "getting user secrets: database unavailable (dev server fault)"
_SEND_ERRORS: Final = (OSError, RuntimeError, WebSocketDisconnect)


class Fault(StrEnum):
    """What `fail_next` makes the next GetManifest calls do."""

    DROP = "drop"  # send half the answer, then close the WebSocket (1011)
    GO_AWAY = "go_away"  # GoAway(2, internal error), then close
    ERROR = "error"  # a drpc Error packet, code 0 (retryable)
    STALL = "stall"  # never answer


def version_problem(requested: str, current: tuple[int, int]) -> str | None:
    """Why coderd refuses API version `requested` (§1.2), or None when it accepts it."""
    parts = requested.split(".")
    problem = None
    if len(parts) != 2:
        problem = f"invalid version string: {requested}"
    elif not parts[0].isdigit():
        problem = f"invalid major version: {requested}"
    elif not parts[1].isdigit():
        problem = f"invalid minor version: {requested}"
    else:
        major, minor = int(parts[0]), int(parts[1])
        at = f"{current[0]}.{current[1]}"
        if major > current[0]:
            problem = f"server is at version {at}, behind requested major version {requested}"
        elif major == current[0] and minor > current[1]:
            problem = f"server is at version {at}, behind requested minor version {requested}"
        elif major != current[0]:
            problem = f"version {requested} is no longer supported"
    return problem


def go_messages(out: bytes) -> Iterator[bytes]:
    """Queued yamux bytes as Go writes them: each header, then each Data body, apart."""
    offset = 0
    while offset < len(out):
        header = yamux.Header.decode(out[offset : offset + yamux.HEADER_SIZE])
        end = offset + yamux.HEADER_SIZE
        yield out[offset:end]
        if header.type is yamux.FrameType.DATA and header.length:
            yield out[end : end + header.length]
            end += header.length
        offset = end


class AgentRPC:
    """The agent RPC endpoint's state and test hooks; one per app."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.current_version = CURRENT_VERSION
        self.ping_interval = PING_INTERVAL
        self.ping_timeout = PING_TIMEOUT
        self.known_rpcs: set[str] = {GET_MANIFEST_RPC}
        self.get_manifest_calls = 0
        self.connections = 0
        self.pongs = 0
        self.dials: list[tuple[str, str]] = []  # (role, version) of every admitted dial
        self.rpc_names: list[str] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._live: set[_Conn] = set()

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._live)

    def fail_next(self, count: int = 1, fault: Fault = Fault.DROP) -> None:
        """Make the next `count` GetManifest calls fail with `fault`."""
        with self._lock:
            self._faults.extend([Fault(fault)] * count)

    def drop_all(self) -> int:
        """Close every live connection abruptly (1011), from any thread; how many."""
        return self._each(lambda conn: conn.close(1011, "dev server: connection dropped"))

    def ping_all(self) -> int:
        """Send a yamux ping on every live connection, from any thread; how many."""
        return self._each(lambda conn: conn.ping())

    async def go_away_all(self) -> None:
        """GoAway(0) and close (1001) on every live connection (server shutdown)."""
        with self._lock:
            live = list(self._live)
        for conn in live:
            conn.session.go_away(yamux.GoAwayCode.NORMAL)
            await conn.flush()
            await conn.close(1001, "dev server shutting down")

    def admit(self, websocket: WebSocket) -> User:
        """The user whose agent token the upgrade request carries (§1.3, §1.5).

        Raises:
            StoreError: 401 for a missing, malformed or unknown token; 400 for an
                unsupported `version`.
        """
        token = (
            websocket.cookies.get(TOKEN_COOKIE)
            or websocket.query_params.get(TOKEN_COOKIE)
            or websocket.headers.get(TOKEN_HEADER)
        )
        if not token:
            raise StoreError(status=401, message=NO_TOKEN)
        if validation.canonical_uuid(token) is None:
            detail = f"An agent token must be a valid UUIDv4. (len {len(token)})"
            raise StoreError(status=401, message=TOKEN_INVALID, detail=detail)
        user = self.store.user_for_agent_token(token)
        if user is None:
            raise StoreError(status=401, message=NOT_AUTHORIZED, detail=NOT_AUTHORIZED_DETAIL)
        version = websocket.query_params.get("version") or "2.0"
        problem = version_problem(version, self.current_version)
        if problem is not None:
            raise StoreError(
                status=400, message=BAD_VERSION, validations=[Validation("version", problem)]
            )
        self.dials.append((websocket.query_params.get("role", ""), version))
        return user

    async def serve(self, websocket: WebSocket, user: User) -> None:
        """Accept the upgrade and serve the session until either side closes it."""
        await websocket.accept()
        conn = _Conn(self, websocket, user.username, asyncio.get_running_loop())
        with self._lock:
            self._live.add(conn)
            self.connections += 1
        try:
            async with asyncio.TaskGroup() as tg:
                keepalive = tg.create_task(conn.keepalive())
                try:
                    await conn.read_loop()
                finally:
                    keepalive.cancel()
        finally:
            with self._lock:
                self._live.discard(conn)

    def take_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _each(self, action: Callable[[_Conn], Coroutine[Any, Any, None]]) -> int:
        with self._lock:
            live = list(self._live)
        for conn in live:
            asyncio.run_coroutine_threadsafe(action(conn), conn.loop)
        return len(live)


@dataclass(slots=True, eq=False)
class _Stream:
    """One client stream's drpc state."""

    reader: drpc.PacketReader = field(default_factory=drpc.PacketReader)
    rpc: str = ""
    answered: bool = False


class _Conn:
    """One accepted WebSocket driven as a yamux server session."""

    def __init__(
        self, rpc: AgentRPC, ws: WebSocket, username: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.rpc = rpc
        self.ws = ws
        self.username = username
        self.loop = loop
        self.session = yamux.Session(client=False)
        self.streams: dict[int, _Stream] = {}
        self.send_lock = asyncio.Lock()
        self.pong = asyncio.Event()
        self.closed = False

    async def read_loop(self) -> None:
        while not self.closed:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.closed = True
                return
            data = message.get("bytes")
            if data is None:  # a text message: coderd closes with 1003
                await self.close(1003, "binary messages only")
                return
            try:
                for event in self.session.receive_data(data):
                    await self.on_event(event)
            except AgentRPCError:
                await self.flush()  # the session queued GoAway(1)
                await self.close(1002, "yamux protocol error")
                return
            await self.flush()

    async def on_event(self, event: yamux.Event) -> None:
        if isinstance(event, yamux.StreamOpened):
            self.streams[event.stream_id] = _Stream()
        elif isinstance(event, yamux.DataReceived) and event.stream_id in self.streams:
            await self.on_data(event.stream_id, self.streams[event.stream_id], event.data)
        elif isinstance(event, yamux.StreamClosed):
            self.streams.pop(event.stream_id, None)
            self.session.close_stream(event.stream_id)
        elif isinstance(event, yamux.StreamReset):
            self.streams.pop(event.stream_id, None)
        elif isinstance(event, yamux.PongReceived):
            self.rpc.pongs += 1
            self.pong.set()
        elif isinstance(event, yamux.GoAwayReceived):
            await self.close(1000, "")

    async def on_data(self, sid: int, stream: _Stream, data: bytes) -> None:
        try:
            packets = stream.reader.feed(data)
        except AgentRPCError:
            self.streams.pop(sid, None)
            self.session.reset_stream(sid)
            return
        for packet in packets:
            if stream.answered:
                return  # trailing Message, CloseSend or Close after our answer
            if packet.kind is drpc.Kind.INVOKE:
                stream.rpc = packet.data.decode("utf-8", "replace")
                self.rpc.rpc_names.append(stream.rpc)
                if stream.rpc not in self.rpc.known_rpcs:
                    stream.answered = True
                    text = f'protocol error: unknown rpc: "{stream.rpc}"'
                    self.session.send(sid, drpc.encode_error(0, text))
            elif packet.kind is drpc.Kind.MESSAGE and stream.rpc:
                stream.answered = True
                if stream.rpc != GET_MANIFEST_RPC:  # known here, but not emulated
                    self.session.send(
                        sid, drpc.encode_error(drpc.UNIMPLEMENTED_CODE, "Unimplemented")
                    )
                    return
                await self.answer_manifest(sid, packet.data)

    async def answer_manifest(self, sid: int, request: bytes) -> None:
        self.rpc.get_manifest_calls += 1
        try:
            decode_get_manifest_request(request)
        except ManifestError:
            self.session.send(sid, drpc.encode_error(0, "malformed GetManifestRequest"))
            return
        fault = self.rpc.take_fault()
        if fault is Fault.STALL:
            return
        if fault is Fault.ERROR:
            self.session.send(sid, drpc.encode_error(0, FAULT_ERROR_TEXT))
            return
        secrets = [
            (s.env_name, s.file_path, s.value.reveal().encode())
            for s in self.rpc.store.list_secrets(self.username)
            if s.enabled
        ]
        message, close_send = drpc.encode_unary_response(
            encode_manifest(secrets, extra_fields=True)
        )
        if fault is Fault.DROP:
            self.session.send(sid, message[: len(message) // 2])
            await self.flush()
            await self.close(1011, "dev server: dropped mid-call")
            return
        if fault is Fault.GO_AWAY:
            self.session.go_away(yamux.GoAwayCode.INTERNAL_ERROR)
            await self.flush()
            await self.close(1011, "dev server: GoAway")
            return
        self.session.send(sid, message)
        await self.flush()  # coderd flushes the Message and the CloseSend separately
        self.session.send(sid, close_send)

    async def keepalive(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.rpc.ping_interval)
            self.pong.clear()
            await self.ping()
            try:
                await asyncio.wait_for(self.pong.wait(), self.rpc.ping_timeout)
            except TimeoutError:
                await self.close(1011, "keepalive timeout")
                return

    async def ping(self) -> None:
        self.session.ping()
        await self.flush()

    async def flush(self) -> None:
        # Under the lock: the reader and the keepalive task both send, and a Data
        # frame's header and body must stay adjacent on the byte stream.
        async with self.send_lock:
            out = self.session.data_to_send()
            if self.closed or not out:
                return
            try:
                for piece in go_messages(out):
                    await self.ws.send_bytes(piece)
            except _SEND_ERRORS:
                self.closed = True

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(*_SEND_ERRORS):
            await self.ws.close(code, reason)
