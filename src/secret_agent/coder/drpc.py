"""storj drpc wire format, sans-I/O: frames, packets and the unary call of `GetManifest`.

Coder runs one drpc transport on each yamux stream (`docs/agent-rpc.md` §3):
the client writes Invoke, Message and CloseSend; the server answers Message then
CloseSend, or one Error. This module builds and parses those bytes for both sides; it
never does I/O and never looks inside a Message (that is `manifest.py`'s job). Reprs and
error messages show kinds, ids and sizes, never data.

A frame is a header byte `C KKKKKK D` (control, kind, done), then uvarints stream id,
message id and length, then `length` data bytes. A packet is the data of consecutive
frames with the same ids and kind, up to the frame with `done` set.

`PacketReader.feed` algorithm (the numbers reappear as `# (n)` in the body):

1. Append the bytes to one buffer; drpc frames ignore yamux and WebSocket boundaries.
2. Parse a frame header: the header byte and three uvarints of at most 10 bytes each.
   If the buffer ends inside it, wait for more.
3. Check the size cap with the declared length, before the data arrives, so a hostile
   length is refused without buffering it: the packet so far plus this frame must stay
   within `max_size` (4 MiB, Coder's `MaxMessageSize`); the error names the size.
4. Wait until the frame's data is buffered.
5. Order by `(stream id, message id)`: the same id continues the packet being
   assembled (a different kind is an error); a lower id than allowed is an error; a
   higher id starts a new packet and drops any partial one, as drpc does.
6. On `done` the packet is complete and the next must have a strictly greater id. An
   unknown kind is dropped when the control bit is set and is an error otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, TypeAlias

from secret_agent.coder.errors import AgentProtocolError, AgentRPCStatusError

MAX_PACKET_SIZE: Final = 4 << 20
# Go's drpc writer splits packet data into frames of at most this many bytes.
SPLIT_SIZE: Final = 64 << 10
MAX_VARINT_BYTES: Final = 10
_MAX_UINT64: Final = (1 << 64) - 1
# drpc's `Unimplemented` error code (§3.8): the RPC exists but is stubbed out.
UNIMPLEMENTED_CODE: Final = 12
_ERROR_CODE_BYTES: Final = 8
# Error texts come from the server; a page of text helps nobody in a log line.
_MAX_ERROR_TEXT: Final = 1000

BytesLike: TypeAlias = bytes | bytearray | memoryview


class Kind(IntEnum):
    """drpc packet kinds (§3.4); 0 is reserved and never sent."""

    INVOKE = 1
    MESSAGE = 2
    ERROR = 3
    CANCEL = 4
    CLOSE = 5
    CLOSE_SEND = 6
    INVOKE_METADATA = 7


_KNOWN_KINDS: Final = frozenset(Kind)


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One drpc frame. `kind` is the raw 6-bit value, which may be an unknown kind."""

    kind: int
    stream_id: int
    message_id: int
    data: bytes = field(repr=False)
    done: bool = True
    control: bool = False

    def encode(self) -> bytes:
        """The frame's wire bytes."""
        return _encode_frame(
            self.kind,
            self.data,
            stream_id=self.stream_id,
            message_id=self.message_id,
            done=self.done,
            control=self.control,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Packet:
    """One complete drpc packet (all its frames' data joined)."""

    kind: Kind
    stream_id: int
    message_id: int
    data: bytes = field(repr=False)
    control: bool = False


def encode_varint(value: int) -> bytes:
    """Protobuf-style unsigned LEB128 of a uint64."""
    if not 0 <= value <= _MAX_UINT64:
        raise ValueError("a drpc varint is a uint64")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: BytesLike, offset: int = 0) -> tuple[int, int] | None:
    """Read a uvarint at `offset`: `(value, offset after it)`, or None if `buf` ends first.

    Raises:
        AgentProtocolError: longer than 10 bytes, or above 2**64 - 1.
    """
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if offset + i >= len(buf):
            return None
        byte = buf[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if value > _MAX_UINT64:
                raise AgentProtocolError("drpc varint overflows 64 bits")
            return value, offset + i + 1
    raise AgentProtocolError(f"drpc varint longer than {MAX_VARINT_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class _FrameHeader:
    kind: int
    done: bool
    control: bool
    stream_id: int
    message_id: int
    length: int
    end: int  # offset of the first data byte


def _parse_header(buf: BytesLike, offset: int) -> _FrameHeader | None:
    if offset >= len(buf):
        return None
    first = buf[offset]
    pos = offset + 1
    values: list[int] = []
    for _ in range(3):
        parsed = decode_varint(buf, pos)
        if parsed is None:
            return None
        value, pos = parsed
        values.append(value)
    stream_id, message_id, length = values
    return _FrameHeader(
        kind=(first & 0x7E) >> 1,
        done=bool(first & 0x01),
        control=bool(first & 0x80),
        stream_id=stream_id,
        message_id=message_id,
        length=length,
        end=pos,
    )


def parse_frame(buf: BytesLike, offset: int = 0) -> tuple[Frame, int] | None:
    """Parse one frame at `offset`: `(frame, offset after it)`, or None if incomplete.

    Raises:
        AgentProtocolError: a malformed varint.
    """
    header = _parse_header(buf, offset)
    if header is None or len(buf) < header.end + header.length:
        return None
    end = header.end + header.length
    frame = Frame(
        kind=header.kind,
        stream_id=header.stream_id,
        message_id=header.message_id,
        data=bytes(buf[header.end : end]),
        done=header.done,
        control=header.control,
    )
    return frame, end


def _encode_frame(
    kind: int, data: BytesLike, *, stream_id: int, message_id: int, done: bool, control: bool
) -> bytes:
    if not 0 <= kind <= 0x3F:
        raise ValueError("a drpc kind has 6 bits")
    first = (kind << 1) | int(done) | (int(control) << 7)
    return b"".join(
        (
            bytes((first,)),
            encode_varint(stream_id),
            encode_varint(message_id),
            encode_varint(len(data)),
            data,
        )
    )


def encode_packet(
    kind: int,
    data: BytesLike,
    *,
    stream_id: int,
    message_id: int,
    control: bool = False,
    split_size: int = SPLIT_SIZE,
) -> bytes:
    """A packet as frames of at most `split_size` data bytes, `done` on the last only.

    Empty data is one empty frame; data that is an exact multiple of `split_size` has
    no empty tail frame (as Go's writer does).
    """
    view = memoryview(data)
    frames: list[bytes] = []
    start = 0
    while True:
        chunk = view[start : start + split_size]
        start += len(chunk)
        done = start >= len(view)
        frames.append(
            _encode_frame(
                kind,
                chunk,
                stream_id=stream_id,
                message_id=message_id,
                done=done,
                control=control,
            )
        )
        if done:
            return b"".join(frames)


def encode_unary_request(rpc: str, message: bytes, stream_id: int = 1) -> bytes:
    """The client's side of a unary call, to write at once: Invoke, Message, CloseSend."""
    return b"".join(
        (
            encode_packet(Kind.INVOKE, rpc.encode(), stream_id=stream_id, message_id=1),
            encode_packet(Kind.MESSAGE, message, stream_id=stream_id, message_id=2),
            encode_packet(Kind.CLOSE_SEND, b"", stream_id=stream_id, message_id=3),
        )
    )


def encode_unary_response(message: bytes, *, stream_id: int = 1) -> tuple[bytes, bytes]:
    """A server's success answer: `(Message frames, CloseSend frame)`.

    coderd flushes them as two separate writes; a test server should do the same.
    """
    return (
        encode_packet(Kind.MESSAGE, message, stream_id=stream_id, message_id=1),
        encode_packet(Kind.CLOSE_SEND, b"", stream_id=stream_id, message_id=2),
    )


def encode_error(code: int, text: str, *, stream_id: int = 1, message_id: int = 1) -> bytes:
    """A server's failure answer: one Error packet, 8-byte big-endian code then text."""
    payload = code.to_bytes(_ERROR_CODE_BYTES, "big") + text.encode()
    return encode_packet(Kind.ERROR, payload, stream_id=stream_id, message_id=message_id)


def decode_error(data: BytesLike) -> AgentRPCStatusError:
    """The exception an Error packet's data stands for (the caller raises it).

    Raises:
        AgentProtocolError: the data is shorter than the 8-byte code.
    """
    if len(data) < _ERROR_CODE_BYTES:
        raise AgentProtocolError(f"malformed drpc error packet: {len(data)} bytes")
    code = int.from_bytes(data[:_ERROR_CODE_BYTES], "big")
    text = bytes(data[_ERROR_CODE_BYTES:]).decode("utf-8", "replace")
    if len(text) > _MAX_ERROR_TEXT:
        text = text[:_MAX_ERROR_TEXT] + "..."
    return AgentRPCStatusError(code=code, message=text)


def unary_result(packet: Packet, *, stream_id: int = 1) -> bytes | None:
    """What a client makes of one response packet (§3.5, §6).

    Returns the response message for a Message packet, and None for packets that do
    not decide the call (other stream ids, Cancel, metadata).

    Raises:
        AgentRPCStatusError: an Error packet.
        AgentProtocolError: Close or CloseSend before any Message ("empty response").
    """
    if packet.stream_id != stream_id:
        return None
    if packet.kind is Kind.MESSAGE:
        return packet.data
    if packet.kind is Kind.ERROR:
        raise decode_error(packet.data)
    if packet.kind in (Kind.CLOSE, Kind.CLOSE_SEND):
        raise AgentProtocolError(f"empty response: drpc {packet.kind.name} before any message")
    return None


class PacketReader:
    """Turns a drpc byte stream (one yamux stream's data) into complete packets."""

    def __init__(self, *, max_size: int = MAX_PACKET_SIZE) -> None:
        self._max_size = max_size
        self._buf = bytearray()
        self._floor = (1, 1)  # the lowest id a new packet may have
        self._id: tuple[int, int] | None = None  # the packet being assembled
        self._kind = 0
        self._control = False
        self._data = bytearray()
        self._broken = False

    @property
    def buffered(self) -> int:
        """Bytes held: unparsed input plus the partial packet's data."""
        return len(self._buf) + len(self._data)

    def feed(self, data: BytesLike) -> list[Packet]:
        """Consume bytes and return the packets they complete, in order.

        Raises:
            AgentProtocolError: a malformed frame, ids going backwards, a kind change
                within a packet, an unknown kind without the control bit, or a packet
                over `max_size`. The reader is unusable afterwards.
        """
        if self._broken:
            raise AgentProtocolError("drpc reader is closed after a protocol error")
        self._buf += data  # (1)
        try:
            return self._drain()
        except AgentProtocolError:
            self._broken = True
            self._buf.clear()
            self._data.clear()
            raise

    def _drain(self) -> list[Packet]:
        packets: list[Packet] = []
        offset = 0
        while (header := _parse_header(self._buf, offset)) is not None:  # (2)
            continuing = (header.stream_id, header.message_id) == self._id
            size = (len(self._data) if continuing else 0) + header.length
            if size > self._max_size:  # (3)
                raise AgentProtocolError(
                    f"drpc packet too large: at least {size} bytes, limit {self._max_size} bytes"
                )
            end = header.end + header.length
            if len(self._buf) < end:  # (4)
                break
            packet = self._add(header, self._buf[header.end : end], continuing=continuing)
            offset = end
            if packet is not None:
                packets.append(packet)
        del self._buf[:offset]
        return packets

    def _add(self, header: _FrameHeader, data: BytesLike, *, continuing: bool) -> Packet | None:
        frame_id = (header.stream_id, header.message_id)
        if continuing:  # (5)
            if header.kind != self._kind:
                raise AgentProtocolError(f"drpc packet kind change within message {frame_id}")
        elif frame_id < self._floor or (self._id is not None and frame_id < self._id):
            raise AgentProtocolError(f"drpc frame ids went backwards to {frame_id}")
        else:
            self._id, self._kind, self._control = frame_id, header.kind, False
            self._data.clear()
        self._control |= header.control
        self._data += data
        if not header.done:
            return None
        self._floor = (header.stream_id, header.message_id + 1)  # (6)
        self._id = None
        payload = bytes(self._data)
        self._data.clear()
        if header.kind not in _KNOWN_KINDS:
            if self._control:
                return None
            raise AgentProtocolError(f"unknown drpc packet kind {header.kind}")
        return Packet(
            kind=Kind(header.kind),
            stream_id=header.stream_id,
            message_id=header.message_id,
            data=payload,
            control=self._control,
        )
