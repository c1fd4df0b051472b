"""hashicorp/yamux protocol version 0, sans-I/O, for either end of the agent RPC.

The workspace agent RPC runs one yamux session over a WebSocket byte stream
(`docs/agent-rpc.md` §2). This module turns received bytes into events and
queues the bytes to send; it never touches a socket, a clock or a thread, so the client
(`coder/agent.py`) and the dev server drive the same state machine. It must not know
about drpc, protobuf or secrets: stream data is opaque bytes, and neither reprs nor
error messages ever show it.

`Session` algorithm (the numbers reappear as `# (n)` in the body):

1. Append received bytes to one buffer and cut 12-byte big-endian headers from it
   (version, type, flags, stream id, length). A version other than 0 or a type above 3
   drops the session without a GoAway, as Go does.
2. Session frames: a Ping with SYN is answered at once with a Ping ACK carrying the
   same opaque value; a Ping ACK is a pong; a GoAway is surfaced and stops
   `open_stream`.
3. Stream flags, before the body: SYN opens a stream (a SYN for a stream that is still
   open is a protocol error; a SYN with our own id parity, after our GoAway, or beyond
   the accept backlog is refused with RST) and is ACKed at once; ACK accepts a stream we
   opened; RST forgets the stream. A FIN on a Data frame is handled after its body, so
   the data comes first.
4. A Data body must fit the stream's receive window, checked at the header so no more
   than the window is ever buffered; more is a protocol error. Bodies are delivered as
   they arrive; bodies for unknown or forgotten streams are discarded (in-flight frames
   after a reset are legitimate).
5. Delivered bytes count as consumed. Once half the receive window is consumed, a
   Window Update grants it back, as Go's receiver does, so a peer can send far more
   than 256 KiB. A larger `receive_window` is granted up front in the SYN or ACK.
6. A Window Update adds its delta to the stream's send window and flushes data that
   was waiting for window.
7. `send` buffers per stream and emits Data frames of at most the peer's window, so
   the peer's window is never exceeded; the rest waits for step 6. `close_stream`
   queues exactly one FIN, after the buffered data; a second FIN from the peer is a
   protocol error (§2.4).
8. A stream is forgotten once both sides have sent FIN, or after RST either way.

A protocol error queues GoAway(1) (except in step 1), marks the session broken and
raises `AgentProtocolError`; the caller should still send `data_to_send()` and close.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from secret_agent.coder.errors import AgentProtocolError
from secret_agent.coder.yamuxwire import (
    _MAX_UINT32,
    ACCEPT_BACKLOG,
    HEADER_SIZE,
    INITIAL_WINDOW,
    PROTOCOL_VERSION,
    BytesLike,
    DataReceived,
    Event,
    Flag,
    FrameType,
    GoAwayCode,
    GoAwayReceived,
    Header,
    PingReceived,
    PongReceived,
    StreamAccepted,
    StreamClosed,
    StreamOpened,
    StreamReset,
)

__all__ = [
    "ACCEPT_BACKLOG",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "PROTOCOL_VERSION",
    "BytesLike",
    "DataReceived",
    "Event",
    "Flag",
    "FrameType",
    "GoAwayCode",
    "GoAwayReceived",
    "Header",
    "PingReceived",
    "PongReceived",
    "Session",
    "StreamAccepted",
    "StreamClosed",
    "StreamOpened",
    "StreamReset",
]


@dataclass(slots=True, kw_only=True)
class _Stream:
    """Per-stream state: both windows, unsent bytes and who has sent FIN."""

    recv_window: int  # what we still let the peer send
    acked: bool
    send_window: int = INITIAL_WINDOW  # what the peer still lets us send
    credit: int = 0  # consumed bytes not yet granted back
    pending: bytearray = field(default_factory=bytearray, repr=False)  # waiting for window
    local_fin: bool = False  # close_stream() was called
    fin_sent: bool = False
    remote_fin: bool = False


class Session:
    """One yamux session, client (odd stream ids) or server (even), without I/O.

    Feed received bytes to `receive_data`, act on the events, and write out whatever
    `data_to_send` returns after every call. Not thread-safe: one owner drives it.
    """

    def __init__(self, *, client: bool, receive_window: int = INITIAL_WINDOW) -> None:
        """Args:
        client: the yamux client role (secret-agent); False for the server role.
        receive_window: the per-stream receive window to grant, at least 256 KiB;
            the excess is granted in the SYN or ACK of every stream.
        """
        if not INITIAL_WINDOW <= receive_window <= _MAX_UINT32:
            raise ValueError("receive_window must be between 256 KiB and 4 GiB")
        self._client = client
        self._receive_window = receive_window
        self._next_id = 1 if client else 2
        self._next_ping = 0
        self._streams: dict[int, _Stream] = {}
        self._inbuf = bytearray()
        self._out = bytearray()
        self._body: Header | None = None  # the Data frame whose body is arriving
        self._body_left = 0
        self._broken = False
        self._local_go_away = False
        self._remote_go_away: int | None = None

    @property
    def client(self) -> bool:
        return self._client

    @property
    def broken(self) -> bool:
        """True after a protocol error: only `data_to_send` is still useful."""
        return self._broken

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call, in order."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: BytesLike) -> list[Event]:
        """Consume bytes from the peer (any split) and return what happened.

        Raises:
            AgentProtocolError: the peer broke the protocol; the session is broken.
        """
        self._check_usable()
        self._inbuf += data
        events: list[Event] = []
        try:
            while True:
                if self._body is not None:
                    if not self._read_body(self._body, events):
                        break
                elif len(self._inbuf) >= HEADER_SIZE:
                    header = Header.decode(self._inbuf)  # (1)
                    del self._inbuf[:HEADER_SIZE]
                    self._dispatch(header, events)
                else:
                    break
        except AgentProtocolError:
            self._broken = True
            raise
        return events

    def open_stream(self) -> int:
        """Open a stream (Window Update with SYN) and return its id.

        Raises:
            AgentProtocolError: the peer sent GoAway, ids are exhausted, or the
                session is broken.
        """
        self._check_usable()
        if self._remote_go_away is not None:
            raise AgentProtocolError(
                f"the peer sent GoAway({self._remote_go_away}) and accepts no new streams"
            )
        stream_id = self._next_id
        if stream_id > _MAX_UINT32:
            raise AgentProtocolError("yamux stream ids exhausted")
        self._next_id += 2
        extra = self._receive_window - INITIAL_WINDOW
        self._streams[stream_id] = _Stream(recv_window=self._receive_window, acked=False)
        self._queue(FrameType.WINDOW_UPDATE, Flag.SYN, stream_id, extra)  # (5)
        return stream_id

    def send(self, stream_id: int, data: BytesLike) -> None:
        """Queue `data` on a stream; frames go out as the peer's window allows.

        Raises:
            AgentProtocolError: the stream is unknown, reset or closed by us.
        """
        self._check_usable()
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin:
            raise AgentProtocolError(f"yamux stream {stream_id} is not open for sending")
        stream.pending += data
        self._flush(stream_id, stream)

    def close_stream(self, stream_id: int) -> None:
        """Half-close: one FIN, after any buffered data. Idempotent, so FIN goes once."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin:
            return
        stream.local_fin = True
        self._flush(stream_id, stream)

    def reset_stream(self, stream_id: int) -> None:
        """Reset a stream (Window Update with RST) and drop its unsent data."""
        if self._streams.pop(stream_id, None) is not None:
            self._queue(FrameType.WINDOW_UPDATE, Flag.RST, stream_id, 0)

    def ping(self) -> int:
        """Queue a Ping and return its opaque value; a `PongReceived` echoes it."""
        opaque = self._next_ping
        self._next_ping = (opaque + 1) & _MAX_UINT32
        self._queue(FrameType.PING, Flag.SYN, 0, opaque)
        return opaque

    def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Tell the peer we accept no new streams (existing ones continue)."""
        self._local_go_away = True
        self._queue(FrameType.GO_AWAY, Flag(0), 0, code)

    def send_window(self, stream_id: int) -> int:
        """How many more body bytes the peer lets us send on the stream now."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.send_window

    def buffered(self, stream_id: int) -> int:
        """Bytes accepted by `send` that still wait for window."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else len(stream.pending)

    def _check_usable(self) -> None:
        if self._broken:
            raise AgentProtocolError("yamux session is closed after a protocol error")

    def _fail(self, message: str) -> AgentProtocolError:
        self._queue(FrameType.GO_AWAY, Flag(0), 0, GoAwayCode.PROTOCOL_ERROR)
        self._broken = True
        return AgentProtocolError(message)

    def _queue(
        self, type_: FrameType, flags: Flag, stream_id: int, length: int, body: BytesLike = b""
    ) -> None:
        self._out += Header(type=type_, flags=flags, stream_id=stream_id, length=length).encode()
        self._out += body

    def _dispatch(self, header: Header, events: list[Event]) -> None:
        if header.type is FrameType.PING:  # (2)
            if header.flags & Flag.SYN:
                self._queue(FrameType.PING, Flag.ACK, 0, header.length)
                events.append(PingReceived(header.length))
            elif header.flags & Flag.ACK:
                events.append(PongReceived(header.length))
        elif header.type is FrameType.GO_AWAY:
            self._remote_go_away = header.length
            events.append(GoAwayReceived(header.length))
        elif header.stream_id == 0:
            raise self._fail(f"yamux {header.type.name} frame on stream 0")
        else:
            self._on_stream_frame(header, events)

    def _on_stream_frame(self, header: Header, events: list[Event]) -> None:
        sid, flags, is_data = header.stream_id, header.flags, header.type is FrameType.DATA
        stream = self._on_syn(sid, events) if flags & Flag.SYN else self._streams.get(sid)  # (3)
        if stream is not None and flags & Flag.RST:
            del self._streams[sid]
            events.append(StreamReset(sid))
            stream = None
        if stream is None:
            if is_data:
                self._body, self._body_left = header, header.length  # (4) discarded
            return
        if flags & Flag.ACK and not stream.acked:
            stream.acked = True
            events.append(StreamAccepted(sid))
        if is_data:
            if stream.remote_fin:
                raise self._fail(f"yamux data after FIN on stream {sid}")
            if header.length > stream.recv_window:  # (4)
                raise self._fail(
                    f"yamux receive window exceeded on stream {sid}:"
                    f" {header.length} bytes, window {stream.recv_window}"
                )
            stream.recv_window -= header.length
            self._body, self._body_left = header, header.length
            return
        stream.send_window += header.length  # (6)
        self._flush(sid, stream)
        if flags & Flag.FIN:
            self._on_fin(sid, stream, events)

    def _on_syn(self, sid: int, events: list[Event]) -> _Stream | None:
        if sid in self._streams:
            raise self._fail(f"yamux SYN for stream {sid}, which is already open")
        ours = (sid % 2 == 1) == self._client
        if ours or self._local_go_away or len(self._streams) >= ACCEPT_BACKLOG:
            self._queue(FrameType.WINDOW_UPDATE, Flag.RST, sid, 0)
            return None
        stream = _Stream(recv_window=self._receive_window, acked=True)
        self._streams[sid] = stream
        extra = self._receive_window - INITIAL_WINDOW  # (5)
        self._queue(FrameType.WINDOW_UPDATE, Flag.ACK, sid, extra)
        events.append(StreamOpened(sid))
        return stream

    def _on_fin(self, sid: int, stream: _Stream, events: list[Event]) -> None:
        if stream.remote_fin:
            raise self._fail(f"yamux unexpected second FIN on stream {sid}")
        stream.remote_fin = True
        events.append(StreamClosed(sid))
        if stream.fin_sent:  # (8)
            del self._streams[sid]

    def _read_body(self, header: Header, events: list[Event]) -> bool:
        """Move body bytes of the current Data frame out; False when more are needed."""
        take = min(self._body_left, len(self._inbuf))
        if take == 0 and self._body_left:
            return False
        sid = header.stream_id
        stream = self._streams.get(sid)
        if take:
            chunk = bytes(self._inbuf[:take])
            del self._inbuf[:take]
            self._body_left -= take
            if stream is not None:
                events.append(DataReceived(sid, chunk))
                self._grant(sid, stream, take, fin=bool(header.flags & Flag.FIN))
        if self._body_left == 0:
            self._body = None
            if stream is not None and header.flags & Flag.FIN:
                self._on_fin(sid, stream, events)
        return True

    def _grant(self, sid: int, stream: _Stream, consumed: int, *, fin: bool) -> None:
        stream.credit += consumed  # (5)
        # A peer that has sent FIN sends nothing more, so granting it window is noise.
        if fin or stream.remote_fin or stream.credit < self._receive_window // 2:
            return
        self._queue(FrameType.WINDOW_UPDATE, Flag(0), sid, stream.credit)
        stream.recv_window += stream.credit
        stream.credit = 0

    def _flush(self, sid: int, stream: _Stream) -> None:
        while stream.pending and stream.send_window > 0:  # (7)
            n = min(len(stream.pending), stream.send_window)
            self._queue(FrameType.DATA, Flag(0), sid, n, stream.pending[:n])
            del stream.pending[:n]
            stream.send_window -= n
        if stream.local_fin and not stream.fin_sent and not stream.pending:
            stream.fin_sent = True
            self._queue(FrameType.WINDOW_UPDATE, Flag.FIN, sid, 0)
            if stream.remote_fin:  # (8)
                del self._streams[sid]
