"""One live agent-RPC connection: a WebSocket, its yamux client session, and its reader.

Why a reader thread: the connection is kept across polls, and coderd pings every 30 s
and drops a session whose pong is 10 s late (`docs/agent-rpc.md` §2.6), so
something must read the socket while no call is in progress. The reader thread is the
only caller of `recv`; it feeds every message into the yamux session (message
boundaries mean nothing), sends what the session queues at once (pongs, window
updates that let a manifest over 256 KiB flow), and hands the data of the call's
stream to that call's drpc reader. `AgentConnection.close` stops it and joins it.

`call` algorithm (the numbers reappear as `# (n)` in the body):

1. Under the lock, refuse if the connection has ended or the server sent GoAway(0);
   otherwise open a new odd stream (never reused within the session).
2. Queue Invoke, Message and CloseSend on it and send them with the SYN, in one
   WebSocket message.
3. Wait for the reader to complete the call: a full Message packet is the answer; an
   Error packet, a FIN or RST before it, a GoAway other than 0, or the connection
   ending fails the call. The deadline bounds the wait.
4. Half-close the stream (exactly one FIN) if the connection still stands.

Nothing here logs, and no message carries payload bytes: sizes, codes and ids only.
The yamux session is not thread-safe, so `_lock` guards it and the call in progress;
every send happens under the lock, so frames leave in the order the session queued
them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from secret_agent.coder import drpc, yamux
from secret_agent.coder.errors import AgentProtocolError, AgentRPCError
from secret_agent.errors import CoderError, CoderUnreachableError

# How long `close` waits for the reader thread; it exits as soon as the socket closes.
JOIN_TIMEOUT: Final = 5.0


@dataclass(slots=True, eq=False)
class _Call:
    """The one call in progress: its stream, its drpc reader, and how it ended."""

    stream_id: int
    rpc: str
    reader: drpc.PacketReader = field(default_factory=drpc.PacketReader)
    done: threading.Event = field(default_factory=threading.Event)
    result: bytes | None = field(default=None, repr=False)
    error: CoderError | None = None

    def finish(self, *, result: bytes | None = None, error: CoderError | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


class AgentConnection:
    """A WebSocket that has completed the upgrade, driven as a yamux client session.

    Owns a reader thread from construction until `close`. One call at a time; the
    caller (`AgentClient`) serialises them.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._session = yamux.Session(client=True)
        self._lock = threading.Lock()
        self._call: _Call | None = None
        self._ended: CoderError | None = None  # why the connection is unusable
        self._draining = False  # GoAway(0): existing streams go on, no new ones
        self._thread = threading.Thread(
            target=self._read_loop, name="secret-agent-rpc-reader", daemon=True
        )
        self._thread.start()

    @property
    def usable(self) -> bool:
        """True while a new call may start on this connection."""
        return self._ended is None and not self._draining

    @property
    def ended(self) -> CoderError | None:
        """Why the connection ended, or None while it stands."""
        return self._ended

    def call(self, rpc: str, request: bytes, *, deadline: float) -> bytes:
        """One unary call on a new stream; the response message's bytes.

        Raises:
            AgentRPCStatusError: the server answered with a drpc Error packet; the
                connection is still usable.
            AgentProtocolError: the server broke the framing, refused the stream or
                sent GoAway; the connection has ended.
            CoderUnreachableError: the connection ended, or no answer came before
                `deadline` (a `time.monotonic()` value).
        """
        with self._lock:
            if self._ended is not None:  # (1)
                raise self._ended
            if self._draining:
                raise AgentProtocolError("the server sent GoAway and accepts no new calls")
            stream_id = self._session.open_stream()
            call = _Call(stream_id=stream_id, rpc=rpc)
            self._call = call
            try:
                self._session.send(stream_id, drpc.encode_unary_request(rpc, request))  # (2)
                self._flush()
            except CoderError as exc:
                call.finish(error=exc)
        try:
            if not call.done.wait(max(0.0, deadline - time.monotonic())):  # (3)
                raise CoderUnreachableError(f"agent RPC {rpc}: no answer before the deadline")
            if call.error is not None:
                raise call.error
            if call.result is None:  # finish() always sets one of the two
                raise AgentProtocolError(f"agent RPC {rpc}: the call ended without an answer")
            return call.result
        finally:
            with self._lock:
                self._call = None
                if self._ended is None:
                    self._session.close_stream(stream_id)  # (4)
                    # A connection that ends right now must not undo an answer already
                    # received; the reader notices the end by itself.
                    with contextlib.suppress(CoderError):
                        self._flush()

    def close(self) -> None:
        """Close the WebSocket (code 1000) and join the reader thread; idempotent."""
        self._end(CoderUnreachableError("the agent RPC connection was closed by the client"))
        self._ws.close()
        if self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT)

    # -- the reader thread ---------------------------------------------------

    def _read_loop(self) -> None:
        error: CoderError
        try:
            for message in self._ws:
                self._receive(message)
            error = CoderUnreachableError("the server closed the agent RPC connection")
        except ConnectionClosed as exc:
            error = _closed(exc)
        except CoderError as exc:
            error = exc
            if isinstance(exc, AgentProtocolError):
                self._send_go_away_quietly()
        except Exception as exc:  # noqa: BLE001 - a dead reader would hang the call until its deadline
            error = AgentProtocolError(f"the agent RPC reader failed ({type(exc).__name__})")
        self._end(error)
        self._ws.close()

    def _receive(self, message: str | bytes) -> None:
        if isinstance(message, str):
            raise AgentProtocolError("the server sent a text WebSocket message")
        with self._lock:
            for event in self._session.receive_data(message):
                self._on_event(event)
            self._flush()

    def _on_event(self, event: yamux.Event) -> None:
        call = self._call
        if isinstance(event, yamux.GoAwayReceived):
            if event.code != yamux.GoAwayCode.NORMAL:
                raise AgentProtocolError(f"the server sent GoAway({event.code}): session over")
            self._draining = True
        elif isinstance(event, yamux.StreamOpened):
            # coderd never opens streams on this connection; refuse any that appears.
            self._session.reset_stream(event.stream_id)
        elif call is None or getattr(event, "stream_id", None) != call.stream_id:
            return  # late frames of an earlier call, pings, pongs
        elif isinstance(event, yamux.DataReceived):
            self._on_data(call, event.data)
        elif isinstance(event, yamux.StreamReset):
            call.finish(error=AgentProtocolError(f"the server reset stream {call.stream_id}"))
        elif isinstance(event, yamux.StreamClosed):
            call.finish(
                error=AgentProtocolError(
                    f"the server closed stream {call.stream_id} without answering {call.rpc}"
                )
            )

    def _on_data(self, call: _Call, data: bytes) -> None:
        if call.done.is_set():
            return  # CloseSend and other trailing packets after the answer
        try:
            for packet in call.reader.feed(data):
                result = drpc.unary_result(packet)
                if result is not None:
                    call.finish(result=result)
                    return
        except AgentRPCError as exc:
            call.finish(error=exc)
            if isinstance(exc, AgentProtocolError):
                # The stream's framing is broken; drop the stream, keep the session.
                self._session.reset_stream(call.stream_id)

    # -- plumbing (callers hold `_lock`, except `_end` and `_send_go_away_quietly`) --

    def _flush(self) -> None:
        out = self._session.data_to_send()
        if out:
            try:
                self._ws.send(out)
            except ConnectionClosed as exc:
                raise _closed(exc) from None

    def _end(self, error: CoderError) -> None:
        with self._lock:
            if self._ended is None:
                self._ended = error
            if self._call is not None:
                self._call.finish(error=self._ended)

    def _send_go_away_quietly(self) -> None:
        # The session queued GoAway(1) on the protocol error; tell the server why.
        with self._lock:
            out = self._session.data_to_send()
            if out:
                with contextlib.suppress(ConnectionClosed):
                    self._ws.send(out)


def _closed(exc: ConnectionClosed) -> CoderUnreachableError:
    """The error for a WebSocket that closed: its close code and reason, never data."""
    frame = exc.rcvd or exc.sent
    if frame is None:
        return CoderUnreachableError("the agent RPC connection dropped (no close frame)")
    reason = f": {frame.reason[:200]}" if frame.reason else ""
    return CoderUnreachableError(f"the agent RPC connection closed (code {frame.code}{reason})")
