"""The yamux wire vocabulary: frame header, types, flags, GoAway codes and events.

Split from `yamux` (which holds the session state machine) so each stays readable;
`yamux` re-exports every name here, and callers import from `yamux`.
Protocol version 0 as `docs/agent-rpc.md` §2 describes it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Final, TypeAlias

from secret_agent.coder.errors import AgentProtocolError

PROTOCOL_VERSION: Final = 0
HEADER_SIZE: Final = 12
# Fixed by the protocol: both sides assume it for every new stream, each direction.
INITIAL_WINDOW: Final = 256 * 1024
# Go's AcceptBacklog: more pending inbound streams than this are refused with RST.
ACCEPT_BACKLOG: Final = 256
_MAX_UINT32: Final = 0xFFFF_FFFF
_HEADER: Final = struct.Struct(">BBHII")

BytesLike: TypeAlias = bytes | bytearray | memoryview


class FrameType(IntEnum):
    """The `type` byte of a yamux header."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(IntFlag):
    """The `flags` bits of a yamux header (unknown bits are kept, and ignored)."""

    SYN = 0x1
    ACK = 0x2
    FIN = 0x4
    RST = 0x8


class GoAwayCode(IntEnum):
    """The `length` of a GoAway frame."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """One 12-byte yamux frame header; only Data frames are followed by a body."""

    type: FrameType
    flags: Flag
    stream_id: int
    length: int

    def __post_init__(self) -> None:
        if not (0 <= self.stream_id <= _MAX_UINT32 and 0 <= self.length <= _MAX_UINT32):
            raise ValueError("yamux stream id and length are uint32")

    def encode(self) -> bytes:
        """The 12 header bytes, big-endian."""
        return _HEADER.pack(PROTOCOL_VERSION, self.type, self.flags, self.stream_id, self.length)

    @classmethod
    def decode(cls, data: BytesLike) -> Header:
        """Parse the first 12 bytes of `data`.

        Raises:
            AgentProtocolError: fewer than 12 bytes, a version other than 0, or an
                unknown type.
        """
        if len(data) < HEADER_SIZE:
            raise AgentProtocolError(f"truncated yamux header: {len(data)} of 12 bytes")
        version, type_, flags, stream_id, length = _HEADER.unpack_from(data)
        if version != PROTOCOL_VERSION:
            raise AgentProtocolError(f"unsupported yamux version {version}")
        if type_ > FrameType.GO_AWAY:
            raise AgentProtocolError(f"unknown yamux frame type {type_}")
        return cls(type=FrameType(type_), flags=Flag(flags), stream_id=stream_id, length=length)


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream (SYN); it has been ACKed already."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The peer accepted (ACKed) a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Body bytes on a stream; one frame's body may arrive as several events."""

    stream_id: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer half-closed the stream (FIN): it will send no more data."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset the stream (RST); it is gone in both directions."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged; the ACK is already queued."""

    opaque: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer answered one of our pings."""

    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer will accept no new streams; code 0 is normal, others mean teardown."""

    code: int


Event: TypeAlias = (
    StreamOpened
    | StreamAccepted
    | DataReceived
    | StreamClosed
    | StreamReset
    | PingReceived
    | PongReceived
    | GoAwayReceived
)
