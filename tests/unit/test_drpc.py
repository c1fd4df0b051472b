"""coder/drpc.py against the bytes of reference/coder-agent-rpc.md §3 and §5.

Expected bytes are written by hand from the reference (§5.3-§5.7), so encoder and
reader are each checked against the wire, not against each other.
"""

from __future__ import annotations

import random

import pytest

from secret_agent.coder.drpc import (
    MAX_PACKET_SIZE,
    Frame,
    Kind,
    Packet,
    PacketReader,
    decode_error,
    decode_varint,
    encode_error,
    encode_packet,
    encode_unary_request,
    encode_unary_response,
    encode_varint,
    parse_frame,
    unary_result,
)
from secret_agent.coder.errors import AgentProtocolError, AgentRPCStatusError

h = bytes.fromhex

RPC = "/coder.agent.v2.Agent/GetManifest"
# §5.3: Invoke(msg 1) + Message(msg 2, empty) + CloseSend(msg 3).
REQUEST = h(
    "03 01 01 21"
    "2f 63 6f 64 65 72 2e 61 67 65 6e 74 2e 76 32 2e"
    "41 67 65 6e 74 2f 47 65 74 4d 61 6e 69 66 65 73"
    "74"
    "05 01 02 00"
    "0d 01 03 00"
)
# §5.4: the one-secret Manifest and the server's Message + CloseSend.
MANIFEST = h(
    "9a 01 2a 0a 0c 47 49 54 48 55 42 5f 54 4f 4b 45 4e"
    "12 12 7e 2f 2e 63 6f 6e 66 69 67 2f 67 68 2f 74 6f 6b 65 6e"
    "1a 06 73 33 63 72 33 74"
)
RESPONSE_MESSAGE = h("05 01 01 2d") + MANIFEST
RESPONSE_CLOSE_SEND = h("0d 01 02 00")
CLIENT_CLOSE = h("0b 01 04 00")  # §5.5
# §5.6: Error for an unknown RPC, code 0.
UNKNOWN_RPC_TEXT = 'protocol error: unknown rpc: "/coder.agent.v2.Agent/Nope"'
ERROR_PACKET = (
    h("07 01 01 41")
    + h("00 00 00 00 00 00 00 00")
    + h(
        "70 72 6f 74 6f 63 6f 6c 20 65 72 72 6f 72 3a 20 75 6e 6b 6e 6f 77 6e 20 72 70 63 3a 20"
        "22 2f 63 6f 64 65 72 2e 61 67 65 6e 74 2e 76 32 2e 41 67 65 6e 74 2f 4e 6f 70 65 22"
    )
)


class TestVarint:
    @pytest.mark.parametrize(
        ("value", "wire"),
        [
            (0, "00"),
            (1, "01"),
            (33, "21"),
            (127, "7f"),
            (128, "80 01"),
            (1536, "80 0c"),
            (65536, "80 80 04"),
            (4 << 20, "80 80 80 02"),
            ((1 << 64) - 1, "ff ff ff ff ff ff ff ff ff 01"),
        ],
    )
    def test_varint_matches_protobuf_encoding(self, value: int, wire: str) -> None:
        """LEB128: low 7 bits first, high bit means more."""
        assert encode_varint(value) == h(wire)
        assert decode_varint(h(wire)) == (value, len(h(wire)))

    def test_incomplete_varint_waits(self) -> None:
        """A varint cut off by the buffer end needs more bytes, it is not an error."""
        assert decode_varint(h("80 80")) is None
        assert decode_varint(b"") is None

    def test_eleven_byte_varint_is_refused(self) -> None:
        """Go rejects varints longer than 10 bytes."""
        with pytest.raises(AgentProtocolError, match="longer than 10"):
            decode_varint(h("80" * 10 + "01"))

    def test_varint_over_64_bits_is_refused(self) -> None:
        """A tenth byte above 1 overflows a uint64."""
        with pytest.raises(AgentProtocolError, match="64 bits"):
            decode_varint(h("ff ff ff ff ff ff ff ff ff 02"))


class TestEncoding:
    def test_unary_request_is_the_reference_bytes(self) -> None:
        """Invoke + empty Message + CloseSend are §5.3's 45 bytes exactly."""
        assert encode_unary_request(RPC, b"") == REQUEST
        assert len(REQUEST) == 45

    def test_unary_response_is_the_reference_bytes(self) -> None:
        """The server's Message and CloseSend are §5.4's, as two separate writes."""
        assert encode_unary_response(MANIFEST) == (RESPONSE_MESSAGE, RESPONSE_CLOSE_SEND)

    def test_error_is_the_reference_bytes(self) -> None:
        """An unknown-RPC Error is §5.6's 69 bytes."""
        assert encode_error(0, UNKNOWN_RPC_TEXT) == ERROR_PACKET

    def test_client_close_is_the_reference_bytes(self) -> None:
        """The optional trailing Close is `0b 01 04 00` (§5.5)."""
        assert encode_packet(Kind.CLOSE, b"", stream_id=1, message_id=4) == CLIENT_CLOSE

    def test_frame_header_bits(self) -> None:
        """Header byte is control<<7 | kind<<1 | done."""
        frame = Frame(
            kind=Kind.CANCEL, stream_id=300, message_id=2, data=b"", done=True, control=True
        )
        assert frame.encode() == h("89 ac 02 02 00")

    def test_large_message_is_split_at_64_kib(self) -> None:
        """1 050 112 bytes: sixteen `04 01 01 80 80 04` frames, then `05 01 01 80 0c` (§3.3)."""
        data = random.Random(1).randbytes(1_050_112)
        wire = encode_packet(Kind.MESSAGE, data, stream_id=1, message_id=1)
        pos = 0
        for i in range(16):
            assert wire[pos : pos + 6] == h("04 01 01 80 80 04"), i
            assert wire[pos + 6 : pos + 6 + 65536] == data[i * 65536 : (i + 1) * 65536]
            pos += 6 + 65536
        assert wire[pos:] == h("05 01 01 80 0c") + data[-1536:]

    def test_exact_multiple_of_64_kib_has_no_empty_tail(self) -> None:
        """128 KiB is two full frames, the second with done set."""
        wire = encode_packet(Kind.MESSAGE, bytes(131072), stream_id=1, message_id=1)
        assert wire == h("04 01 01 80 80 04") + bytes(65536) + h("05 01 01 80 80 04") + bytes(65536)

    def test_parse_frame_reads_one_frame(self) -> None:
        """parse_frame returns the frame and where the next one starts; None if cut."""
        frame, end = parse_frame(REQUEST) or (None, 0)
        assert frame == Frame(kind=Kind.INVOKE, stream_id=1, message_id=1, data=RPC.encode())
        assert end == 37
        assert parse_frame(REQUEST[:36]) is None
        assert parse_frame(REQUEST, 37) == (
            Frame(kind=Kind.MESSAGE, stream_id=1, message_id=2, data=b""),
            41,
        )


class TestPacketReader:
    def test_reference_request_is_three_packets(self) -> None:
        """§5.3 reads as Invoke(name), Message(empty), CloseSend, ids 1-3."""
        assert PacketReader().feed(REQUEST) == [
            Packet(kind=Kind.INVOKE, stream_id=1, message_id=1, data=RPC.encode()),
            Packet(kind=Kind.MESSAGE, stream_id=1, message_id=2, data=b""),
            Packet(kind=Kind.CLOSE_SEND, stream_id=1, message_id=3, data=b""),
        ]

    def test_reference_response_gives_the_manifest(self) -> None:
        """§5.4's Message carries the manifest; CloseSend follows in a later write."""
        reader = PacketReader()
        [message] = reader.feed(RESPONSE_MESSAGE)
        assert unary_result(message) == MANIFEST
        [close_send] = reader.feed(RESPONSE_CLOSE_SEND)
        assert close_send.kind is Kind.CLOSE_SEND
        assert close_send.message_id == 2

    def test_one_byte_at_a_time(self) -> None:
        """Frames are cut anywhere by yamux; nothing is returned until a packet is done."""
        reader = PacketReader()
        packets = []
        for byte in RESPONSE_MESSAGE:
            packets += reader.feed(bytes([byte]))
        assert [p.data for p in packets] == [MANIFEST]
        assert reader.buffered == 0

    def test_message_split_across_frames_reassembles(self) -> None:
        """Three hand-written frames (done only on the last) make one packet."""
        wire = h("04 01 01 03") + b"abc" + h("04 01 01 02") + b"de" + h("05 01 01 01") + b"f"
        assert PacketReader().feed(wire) == [
            Packet(kind=Kind.MESSAGE, stream_id=1, message_id=1, data=b"abcdef")
        ]

    def test_large_reference_message_reassembles_from_random_chunks(self) -> None:
        """§5.7's 1 050 112-byte message, hand-framed, fed in random cuts."""
        data = random.Random(2).randbytes(1_050_112)
        wire = b"".join(
            h("04 01 01 80 80 04") + data[i : i + 65536] for i in range(0, 16 * 65536, 65536)
        )
        wire += h("05 01 01 80 0c") + data[16 * 65536 :]
        rng = random.Random(3)
        reader = PacketReader()
        packets = []
        pos = 0
        while pos < len(wire):
            step = rng.randint(1, 70000)
            packets += reader.feed(wire[pos : pos + step])
            pos += step
        assert len(packets) == 1
        assert packets[0].data == data

    def test_error_packet_raises_status_error(self) -> None:
        """§5.6 surfaces as AgentRPCStatusError with code 0 and the server's text."""
        [packet] = PacketReader().feed(ERROR_PACKET)
        assert packet.kind is Kind.ERROR
        with pytest.raises(AgentRPCStatusError) as info:
            unary_result(packet)
        assert info.value.code == 0
        assert info.value.message == UNKNOWN_RPC_TEXT
        assert UNKNOWN_RPC_TEXT in str(info.value)
        assert info.value.retryable is False  # an unknown RPC needs an upgrade, not a retry

    @pytest.mark.parametrize(("code", "retryable"), [(0, True), (12, False), (3, False)])
    def test_error_code_decides_retry(self, code: int, retryable: bool) -> None:
        """Code 0 (a handler hiccup) is retryable; Unimplemented and others are not."""
        text = b"fetching workspace agent data: db down"
        wire = h("07 01 01") + bytes([8 + len(text)]) + code.to_bytes(8, "big") + text
        [packet] = PacketReader().feed(wire)
        error = decode_error(packet.data)
        assert (error.code, error.message, error.retryable) == (code, text.decode(), retryable)

    def test_short_error_payload_is_a_protocol_error(self) -> None:
        """An Error shorter than its 8-byte code is malformed; the size is named."""
        with pytest.raises(AgentProtocolError, match="3 bytes"):
            decode_error(b"\x00\x00\x00")

    @pytest.mark.parametrize("kind", [Kind.CLOSE_SEND, Kind.CLOSE])
    def test_close_before_message_is_an_empty_response(self, kind: Kind) -> None:
        """CloseSend or Close with no Message first fails the call."""
        with pytest.raises(AgentProtocolError, match="empty response"):
            unary_result(Packet(kind=kind, stream_id=1, message_id=1, data=b""))

    def test_undeciding_packets_are_skipped(self) -> None:
        """Cancel, metadata and other drpc stream ids do not decide the call."""
        assert (
            unary_result(
                Packet(kind=Kind.CANCEL, stream_id=1, message_id=1, data=b"", control=True)
            )
            is None
        )
        assert unary_result(Packet(kind=Kind.MESSAGE, stream_id=2, message_id=1, data=b"x")) is None

    def test_size_cap_names_the_declared_size_before_the_data_arrives(self) -> None:
        """A frame header claiming 4 MiB + 1 is refused at once, naming 4194305."""
        with pytest.raises(AgentProtocolError, match="4194305 bytes, limit 4194304"):
            PacketReader().feed(h("05 01 01 81 80 80 02"))

    def test_size_cap_counts_the_whole_packet(self) -> None:
        """Frames under the cap that add up to more than it are refused too."""
        reader = PacketReader()
        assert reader.feed(h("04 01 01 80 80 80 02") + bytes(MAX_PACKET_SIZE)) == []
        with pytest.raises(AgentProtocolError, match="4194305 bytes"):
            reader.feed(h("05 01 01 01 00"))
        with pytest.raises(AgentProtocolError, match="closed"):
            reader.feed(RESPONSE_CLOSE_SEND)

    def test_packet_exactly_at_the_cap_is_accepted(self) -> None:
        """4 MiB is allowed; only more is an overflow."""
        [packet] = PacketReader().feed(h("05 01 01 80 80 80 02") + bytes(MAX_PACKET_SIZE))
        assert len(packet.data) == MAX_PACKET_SIZE

    def test_smaller_cap(self) -> None:
        """max_size is configurable and the message names the sum."""
        with pytest.raises(AgentProtocolError, match="12 bytes, limit 10"):
            PacketReader(max_size=10).feed(
                h("04 01 01 06") + bytes(6) + h("05 01 01 06") + bytes(6)
            )

    def test_unknown_kind_with_control_bit_is_ignored(self) -> None:
        """Kind 9 with the control bit (0x93) is dropped; the next packet still reads."""
        wire = h("93 01 01 02 aa bb") + h("05 01 02 01") + b"m"
        assert PacketReader().feed(wire) == [
            Packet(kind=Kind.MESSAGE, stream_id=1, message_id=2, data=b"m")
        ]

    @pytest.mark.parametrize("header", ["13", "01"], ids=["kind9", "kind0"])
    def test_unknown_kind_without_control_bit_is_an_error(self, header: str) -> None:
        """Kind 9 (or reserved 0) without the control bit is a protocol error naming it."""
        with pytest.raises(AgentProtocolError, match="unknown drpc packet kind"):
            PacketReader().feed(h(header + " 01 01 00"))

    def test_cancel_is_a_known_control_packet(self) -> None:
        """Cancel (kind 4, control) is returned for the caller to ignore."""
        assert PacketReader().feed(h("89 01 01 00")) == [
            Packet(kind=Kind.CANCEL, stream_id=1, message_id=1, data=b"", control=True)
        ]

    def test_ids_going_backwards_are_an_error(self) -> None:
        """After message 2 completes, a frame for message 2 again is refused."""
        reader = PacketReader()
        reader.feed(h("05 01 02 00"))
        with pytest.raises(AgentProtocolError, match="backwards"):
            reader.feed(h("05 01 02 00"))

    def test_stream_zero_is_below_the_first_id(self) -> None:
        """Readers start at (1, 1): stream 0 can never come first."""
        with pytest.raises(AgentProtocolError, match="backwards"):
            PacketReader().feed(h("05 00 01 00"))

    def test_kind_change_within_a_packet_is_an_error(self) -> None:
        """The frames of one (stream, message) id must share a kind."""
        with pytest.raises(AgentProtocolError, match="kind change"):
            PacketReader().feed(h("04 01 01 01 61 07 01 01 00"))

    def test_higher_id_drops_a_partial_packet(self) -> None:
        """A new id while a packet is half-built discards the partial data, as drpc does."""
        wire = h("04 01 01 02") + b"ab" + h("05 01 02 01") + b"z"
        assert PacketReader().feed(wire) == [
            Packet(kind=Kind.MESSAGE, stream_id=1, message_id=2, data=b"z")
        ]

    def test_repr_hides_data(self) -> None:
        """Frame and Packet reprs never show payload bytes."""
        packet = Packet(kind=Kind.MESSAGE, stream_id=1, message_id=1, data=b"CANARY-value")
        frame = Frame(kind=Kind.MESSAGE, stream_id=1, message_id=1, data=b"CANARY-value")
        assert "CANARY" not in repr(packet) + repr(frame)
