"""coder/yamux.py against the bytes of reference/coder-agent-rpc.md §2 and §5.

Expected bytes are written by hand from the reference; frames the code emits are
parsed back with the test's own `split_frames`, never with the module's decoder, so a
bug shared by encoder and decoder cannot hide.
"""

from __future__ import annotations

import struct

import pytest

from secret_agent.coder.errors import AgentProtocolError
from secret_agent.coder.yamux import (
    INITIAL_WINDOW,
    DataReceived,
    Flag,
    FrameType,
    GoAwayCode,
    GoAwayReceived,
    Header,
    PingReceived,
    PongReceived,
    Session,
    StreamAccepted,
    StreamClosed,
    StreamOpened,
    StreamReset,
)

h = bytes.fromhex

# §5.2 - §5.7, byte for byte.
SYN_1 = h("00 01 00 01 00 00 00 01 00 00 00 00")
SYN_1_4MIB = h("00 01 00 01 00 00 00 01 00 40 00 00")
ACK_1 = h("00 01 00 02 00 00 00 01 00 00 00 00")
FIN_1 = h("00 01 00 04 00 00 00 01 00 00 00 00")
DATA_1_LEN_45 = h("00 00 00 00 00 00 00 01 00 00 00 2d")
DATA_1_LEN_49 = h("00 00 00 00 00 00 00 01 00 00 00 31")
DATA_1_LEN_4 = h("00 00 00 00 00 00 00 01 00 00 00 04")
PING_0 = h("00 02 00 01 00 00 00 00 00 00 00 00")
PONG_0 = h("00 02 00 02 00 00 00 00 00 00 00 00")
WINDOW_128K_1 = h("00 01 00 00 00 00 00 01 00 02 00 00")
RST_3 = h("00 01 00 08 00 00 00 03 00 00 00 00")
GO_AWAY_PROTOCOL = h("00 03 00 00 00 00 00 00 00 00 00 01")
GO_AWAY_NORMAL = h("00 03 00 00 00 00 00 00 00 00 00 00")

# §5.3: Invoke + Message + CloseSend, the 45-byte body of the client's Data frame.
REQUEST_BODY = h(
    "03 01 01 21 2f 63 6f 64 65 72 2e 61 67 65 6e 74 2e 76 32 2e"
    "41 67 65 6e 74 2f 47 65 74 4d 61 6e 69 66 65 73 74"
    "05 01 02 00 0d 01 03 00"
)
# §5.4: the server's Message (49 bytes) and CloseSend (4 bytes) bodies.
RESPONSE_BODY = h(
    "05 01 01 2d 9a 01 2a 0a 0c 47 49 54 48 55 42 5f 54 4f 4b 45 4e"
    "12 12 7e 2f 2e 63 6f 6e 66 69 67 2f 67 68 2f 74 6f 6b 65 6e 1a 06 73 33 63 72 33 74"
)
CLOSE_SEND_BODY = h("0d 01 02 00")

Frame = tuple[int, int, int, int, bytes]  # type, flags, stream id, length, body


def split_frames(data: bytes) -> list[Frame]:
    """The test's own yamux parser: 12-byte big-endian header, a body only for Data."""
    frames: list[Frame] = []
    pos = 0
    while pos < len(data):
        version, type_, flags, sid, length = struct.unpack_from(">BBHII", data, pos)
        assert version == 0
        pos += 12
        body = data[pos : pos + length] if type_ == 0 else b""
        pos += len(body)
        frames.append((type_, flags, sid, length, body))
    return frames


def connected_pair(*, receive_window: int = INITIAL_WINDOW) -> tuple[Session, Session, int]:
    """A client and a server session with stream 1 opened and ACKed."""
    client = Session(client=True, receive_window=receive_window)
    server = Session(client=False)
    sid = client.open_stream()
    assert server.receive_data(client.data_to_send()) == [StreamOpened(sid)]
    assert client.receive_data(server.data_to_send()) == [StreamAccepted(sid)]
    return client, server, sid


class TestHeader:
    @pytest.mark.parametrize(
        ("wire", "header"),
        [
            (SYN_1, Header(type=FrameType.WINDOW_UPDATE, flags=Flag.SYN, stream_id=1, length=0)),
            (ACK_1, Header(type=FrameType.WINDOW_UPDATE, flags=Flag.ACK, stream_id=1, length=0)),
            (FIN_1, Header(type=FrameType.WINDOW_UPDATE, flags=Flag.FIN, stream_id=1, length=0)),
            (DATA_1_LEN_45, Header(type=FrameType.DATA, flags=Flag(0), stream_id=1, length=45)),
            (PING_0, Header(type=FrameType.PING, flags=Flag.SYN, stream_id=0, length=0)),
            (PONG_0, Header(type=FrameType.PING, flags=Flag.ACK, stream_id=0, length=0)),
            (
                WINDOW_128K_1,
                Header(type=FrameType.WINDOW_UPDATE, flags=Flag(0), stream_id=1, length=131072),
            ),
            (RST_3, Header(type=FrameType.WINDOW_UPDATE, flags=Flag.RST, stream_id=3, length=0)),
            (
                GO_AWAY_PROTOCOL,
                Header(type=FrameType.GO_AWAY, flags=Flag(0), stream_id=0, length=1),
            ),
            (
                SYN_1_4MIB,
                Header(type=FrameType.WINDOW_UPDATE, flags=Flag.SYN, stream_id=1, length=4 << 20),
            ),
        ],
        ids=[
            "syn",
            "ack",
            "fin",
            "data45",
            "ping",
            "pong",
            "window128k",
            "rst3",
            "goaway1",
            "syn4mib",
        ],
    )
    def test_header_matches_reference_bytes(self, wire: bytes, header: Header) -> None:
        """Each §5 header decodes to its fields and encodes back to the same 12 bytes."""
        assert Header.decode(wire) == header
        assert header.encode() == wire

    def test_big_stream_id_and_length_are_big_endian(self) -> None:
        """Stream id and length are uint32 in network order."""
        header = Header(
            type=FrameType.DATA, flags=Flag.FIN | Flag.ACK, stream_id=0x01020304, length=0xA0B0C0D0
        )
        assert header.encode() == h("00 00 00 06 01 02 03 04 a0 b0 c0 d0")

    @pytest.mark.parametrize(
        ("wire", "reason"),
        [
            (h("01 00 00 00 00 00 00 01 00 00 00 00"), "version 1"),
            (h("00 04 00 00 00 00 00 01 00 00 00 00"), "type 4"),
            (h("00 01 00 01 00 00 00 01 00 00 00"), "12 bytes"),
        ],
        ids=["version", "type", "truncated"],
    )
    def test_bad_header_is_refused(self, wire: bytes, reason: str) -> None:
        """A wrong version, an unknown type or a short header is a protocol error."""
        with pytest.raises(AgentProtocolError, match=reason):
            Header.decode(wire)


class TestStreams:
    def test_client_opens_odd_streams_with_a_window_update_syn(self) -> None:
        """The client's SYN is §5.2's bytes; ids go 1, 3, 5."""
        client = Session(client=True)
        assert client.open_stream() == 1
        assert client.data_to_send() == SYN_1
        assert [client.open_stream(), client.open_stream()] == [3, 5]

    def test_server_opens_even_streams(self) -> None:
        """The server role allocates 2, 4, ..."""
        server = Session(client=False)
        assert [server.open_stream(), server.open_stream()] == [2, 4]
        assert split_frames(server.data_to_send())[0] == (1, 1, 2, 0, b"")

    def test_larger_receive_window_is_granted_in_the_syn(self) -> None:
        """receive_window = 256 KiB + 4 MiB puts delta 4 MiB in the SYN (§2.5 (b))."""
        client = Session(client=True, receive_window=INITIAL_WINDOW + (4 << 20))
        client.open_stream()
        assert client.data_to_send() == SYN_1_4MIB

    def test_client_call_is_the_reference_byte_sequence(self) -> None:
        """Client side of §5.2-§5.5: SYN, request Data, then the server's frames, then FIN."""
        client = Session(client=True)
        sid = client.open_stream()
        client.send(sid, REQUEST_BODY)
        assert client.data_to_send() == SYN_1 + DATA_1_LEN_45 + REQUEST_BODY

        server_bytes = (
            ACK_1 + DATA_1_LEN_49 + RESPONSE_BODY + DATA_1_LEN_4 + CLOSE_SEND_BODY + FIN_1
        )
        assert client.receive_data(server_bytes) == [
            StreamAccepted(1),
            DataReceived(1, RESPONSE_BODY),
            DataReceived(1, CLOSE_SEND_BODY),
            StreamClosed(1),
        ]
        assert client.data_to_send() == b""  # 53 bytes consumed: far from a window update
        client.close_stream(sid)
        assert client.data_to_send() == FIN_1
        with pytest.raises(AgentProtocolError, match="not open"):
            client.send(sid, b"x")

    def test_server_accepts_the_reference_request(self) -> None:
        """Server side: SYN + Data give StreamOpened and the body, answered by §5.4's ACK."""
        server = Session(client=False)
        events = server.receive_data(SYN_1 + DATA_1_LEN_45 + REQUEST_BODY)
        assert events == [StreamOpened(1), DataReceived(1, REQUEST_BODY)]
        assert server.data_to_send() == ACK_1
        server.send(1, RESPONSE_BODY)
        server.send(1, CLOSE_SEND_BODY)
        assert (
            server.data_to_send() == DATA_1_LEN_49 + RESPONSE_BODY + DATA_1_LEN_4 + CLOSE_SEND_BODY
        )
        assert server.receive_data(FIN_1) == [StreamClosed(1)]
        server.close_stream(1)
        assert server.data_to_send() == FIN_1

    def test_syn_on_a_data_frame_opens_the_stream(self) -> None:
        """A SYN may ride on a Data frame; the data is delivered after StreamOpened."""
        server = Session(client=False)
        events = server.receive_data(h("00 00 00 01 00 00 00 05 00 00 00 02") + b"hi")
        assert events == [StreamOpened(5), DataReceived(5, b"hi")]

    def test_fin_on_a_data_frame_comes_after_its_data(self) -> None:
        """Data + FIN in one frame: the bytes first, then StreamClosed."""
        client, _server, _sid = connected_pair()
        events = client.receive_data(h("00 00 00 04 00 00 00 01 00 00 00 03") + b"end")
        assert events == [DataReceived(1, b"end"), StreamClosed(1)]

    def test_fin_is_sent_exactly_once(self) -> None:
        """Closing twice sends one FIN: a second one would kill the session (§2.4)."""
        client, _server, sid = connected_pair()
        client.close_stream(sid)
        client.close_stream(sid)
        assert client.data_to_send() == FIN_1

    def test_fin_waits_for_buffered_data(self) -> None:
        """close_stream with data still waiting for window sends FIN after that data."""
        client, server, sid = connected_pair()
        client.send(sid, bytes(INITIAL_WINDOW + 10))
        client.close_stream(sid)
        wire = client.data_to_send()
        assert [f[3] for f in split_frames(wire)] == [INITIAL_WINDOW]  # no FIN yet
        server.receive_data(wire)
        client.receive_data(server.data_to_send())  # the server's window update
        assert [(f[0], f[1], f[3]) for f in split_frames(client.data_to_send())] == [
            (0, 0, 10),
            (1, 4, 0),
        ]

    def test_second_fin_from_the_peer_is_a_protocol_error(self) -> None:
        """A FIN on a stream the peer already half-closed gets GoAway(1) (§2.4)."""
        client, _server, _sid = connected_pair()
        client.receive_data(FIN_1)
        with pytest.raises(AgentProtocolError, match="FIN"):
            client.receive_data(FIN_1)
        assert client.data_to_send() == GO_AWAY_PROTOCOL
        assert client.broken
        with pytest.raises(AgentProtocolError, match="closed"):
            client.receive_data(PING_0)

    def test_frames_for_a_fully_closed_stream_are_ignored(self) -> None:
        """Once both FINs crossed, the stream is forgotten and stray frames are dropped."""
        client, _server, sid = connected_pair()
        client.close_stream(sid)
        client.receive_data(FIN_1)
        assert client.receive_data(FIN_1 + DATA_1_LEN_4 + b"late") == []
        assert client.data_to_send() == FIN_1

    def test_data_after_fin_is_a_protocol_error(self) -> None:
        """The peer promised no more data with its FIN."""
        client, _server, _sid = connected_pair()
        client.receive_data(FIN_1)
        with pytest.raises(AgentProtocolError, match="after FIN"):
            client.receive_data(DATA_1_LEN_4 + b"more")
        assert client.data_to_send() == GO_AWAY_PROTOCOL

    def test_duplicate_syn_is_a_protocol_error(self) -> None:
        """A SYN for a stream that is still open gets GoAway(1) (§2.4)."""
        server = Session(client=False)
        server.receive_data(SYN_1)
        server.data_to_send()
        with pytest.raises(AgentProtocolError, match="already open"):
            server.receive_data(SYN_1)
        assert server.data_to_send() == GO_AWAY_PROTOCOL

    def test_syn_with_our_own_parity_is_reset(self) -> None:
        """A server SYN for odd id 3 is refused with RST; the session lives on."""
        client = Session(client=True)
        assert client.receive_data(h("00 01 00 01 00 00 00 03 00 00 00 00")) == []
        assert client.data_to_send() == RST_3
        assert client.receive_data(PING_0) == [PingReceived(0)]

    def test_syn_after_our_go_away_is_reset(self) -> None:
        """After go_away, new inbound streams are refused with RST."""
        server = Session(client=False)
        server.go_away()
        assert server.data_to_send() == GO_AWAY_NORMAL
        assert server.receive_data(h("00 01 00 01 00 00 00 03 00 00 00 00")) == []
        assert server.data_to_send() == RST_3

    def test_peer_reset_forgets_the_stream(self) -> None:
        """RST surfaces StreamReset; later data for the stream is discarded silently."""
        server = Session(client=False)
        server.receive_data(h("00 01 00 01 00 00 00 03 00 00 00 00"))
        server.data_to_send()
        assert server.receive_data(RST_3) == [StreamReset(3)]
        with pytest.raises(AgentProtocolError, match="not open"):
            server.send(3, b"x")
        assert server.receive_data(h("00 00 00 00 00 00 00 03 00 00 00 02") + b"zz" + PING_0) == [
            PingReceived(0)
        ]

    def test_reset_stream_sends_rst(self) -> None:
        """reset_stream(3) is §5.7's reset frame and drops unsent data."""
        client = Session(client=True)
        client.open_stream()
        sid = client.open_stream()
        client.data_to_send()
        client.reset_stream(sid)
        client.reset_stream(sid)
        assert client.data_to_send() == RST_3
        assert client.buffered(sid) == 0

    def test_data_for_an_unknown_stream_is_discarded_across_chunks(self) -> None:
        """A body for a stream never opened is skipped even when split over calls."""
        client = Session(client=True)
        assert client.receive_data(h("00 00 00 00 00 00 00 09 00 00 00 05") + b"ab") == []
        assert client.receive_data(b"cde" + PING_0) == [PingReceived(0)]
        assert client.data_to_send() == PONG_0

    def test_stream_frame_on_stream_zero_is_a_protocol_error(self) -> None:
        """Data and Window Update belong to a stream; id 0 is the session's."""
        client = Session(client=True)
        with pytest.raises(AgentProtocolError, match="stream 0"):
            client.receive_data(h("00 01 00 01 00 00 00 00 00 00 00 00"))

    def test_bad_version_drops_the_session_without_go_away(self) -> None:
        """Like Go, a non-zero version byte tears down without sending GoAway (§2.2)."""
        client = Session(client=True)
        with pytest.raises(AgentProtocolError, match="version"):
            client.receive_data(h("07 00 00 00 00 00 00 01 00 00 00 00"))
        assert client.data_to_send() == b""
        assert client.broken

    def test_data_repr_hides_the_bytes(self) -> None:
        """An event's repr never shows stream data."""
        assert "CANARY" not in repr(DataReceived(1, b"CANARY-value"))


class TestSessionFrames:
    @pytest.mark.parametrize("opaque", [0, 7, 0xDEADBEEF])
    def test_ping_is_answered_with_the_same_opaque(self, opaque: int) -> None:
        """A Ping SYN is surfaced and answered at once with a Ping ACK echoing opaque."""
        client = Session(client=True)
        request = h("00 02 00 01 00 00 00 00") + opaque.to_bytes(4, "big")
        assert client.receive_data(request) == [PingReceived(opaque)]
        assert client.data_to_send() == h("00 02 00 02 00 00 00 00") + opaque.to_bytes(4, "big")

    def test_our_pings_count_up_and_pongs_are_surfaced(self) -> None:
        """ping() sends opaque 0, 1, ...; the peer's ACK becomes PongReceived."""
        client = Session(client=True)
        assert client.ping() == 0
        assert client.ping() == 1
        assert client.data_to_send() == PING_0 + h("00 02 00 01 00 00 00 00 00 00 00 01")
        assert client.receive_data(PONG_0) == [PongReceived(0)]
        assert client.data_to_send() == b""

    def test_ping_between_two_sessions(self) -> None:
        """A server's ping reaches the client and the answer comes back as a pong."""
        client, server, _sid = connected_pair()
        opaque = server.ping()
        assert client.receive_data(server.data_to_send()) == [PingReceived(opaque)]
        assert server.receive_data(client.data_to_send()) == [PongReceived(opaque)]

    @pytest.mark.parametrize("code", [0, 1, 2, 99])
    def test_go_away_is_surfaced_and_stops_new_streams(self, code: int) -> None:
        """GoAway(code) becomes GoAwayReceived(code); open_stream then fails."""
        client = Session(client=True)
        assert client.receive_data(h("00 03 00 00 00 00 00 00") + code.to_bytes(4, "big")) == [
            GoAwayReceived(code)
        ]
        with pytest.raises(AgentProtocolError, match="GoAway"):
            client.open_stream()

    def test_go_away_bytes(self) -> None:
        """go_away(PROTOCOL_ERROR) is §5.7's GoAway frame."""
        server = Session(client=False)
        server.go_away(GoAwayCode.PROTOCOL_ERROR)
        assert server.data_to_send() == GO_AWAY_PROTOCOL


class TestFlowControl:
    def test_data_beyond_the_window_is_refused_at_the_header(self) -> None:
        """A Data header claiming 256 KiB + 1 fails before its body arrives (GoAway(1))."""
        client, _server, _sid = connected_pair()
        with pytest.raises(AgentProtocolError, match="262145 bytes, window 262144"):
            client.receive_data(h("00 00 00 00 00 00 00 01 00 04 00 01"))
        assert client.data_to_send() == GO_AWAY_PROTOCOL

    def test_window_is_the_sum_of_frames_not_each_frame(self) -> None:
        """Frames that fit one by one but not together (nothing granted yet) are refused."""
        client, _server, _sid = connected_pair()
        # 100 000 consumed bytes are below the 128 KiB update threshold, so no window
        # comes back, and 162 145 more overflow the 162 144 that are left.
        client.receive_data(h("00 00 00 00 00 00 00 01 00 01 86 a0") + bytes(100_000))
        assert client.data_to_send() == b""
        with pytest.raises(AgentProtocolError, match="162145 bytes, window 162144"):
            client.receive_data(h("00 00 00 00 00 00 00 01 00 02 79 61"))

    def test_peer_window_grant_in_its_syn_is_honoured(self) -> None:
        """A SYN carrying delta 4 MiB lets the acceptor send 256 KiB + 4 MiB at once."""
        server = Session(client=False)
        server.receive_data(SYN_1_4MIB)
        assert server.send_window(1) == INITIAL_WINDOW + (4 << 20)

    def test_sender_stops_at_the_window_and_resumes_on_update(self) -> None:
        """The server sends exactly 262 144 body bytes, then waits (§5.7)."""
        _client, server, sid = connected_pair()
        server.send(sid, bytes(1_050_112))
        frames = split_frames(server.data_to_send())
        assert sum(f[3] for f in frames) == INITIAL_WINDOW
        assert server.buffered(sid) == 1_050_112 - INITIAL_WINDOW
        assert server.send_window(sid) == 0
        server.receive_data(WINDOW_128K_1)
        assert [f[3] for f in split_frames(server.data_to_send())] == [131072]

    @pytest.mark.parametrize(
        "receive_window",
        [INITIAL_WINDOW, INITIAL_WINDOW + (4 << 20)],
        ids=["go-style-updates", "4mib-in-syn"],
    )
    def test_large_payload_flows_and_the_window_is_never_exceeded(
        self, receive_window: int
    ) -> None:
        """A 1 050 112-byte payload arrives whole; in flight never exceeds the window."""
        payload = bytes(i % 251 for i in range(1_050_112))
        client, server, sid = connected_pair(receive_window=receive_window)
        server.send(sid, payload)
        server.close_stream(sid)
        received = bytearray()
        in_flight = 0  # body bytes sent by the server and not yet granted back
        window = receive_window
        rounds = 0
        closed = False
        while not closed:
            rounds += 1
            assert rounds < 100, "transfer stalled"
            to_client = server.data_to_send()
            for type_, _flags, _sid, length, _body in split_frames(to_client):
                if type_ == 0:
                    in_flight += length
                    assert in_flight <= window
            for event in client.receive_data(to_client):
                if isinstance(event, DataReceived):
                    received += event.data
                closed |= isinstance(event, StreamClosed)
            to_server = client.data_to_send()
            for type_, flags, _sid, length, _body in split_frames(to_server):
                assert (type_, flags) == (1, 0)
                assert length >= INITIAL_WINDOW // 2  # updates are batched, as Go's
                in_flight -= length
            server.receive_data(to_server)
        assert bytes(received) == payload
        if receive_window > INITIAL_WINDOW:
            assert rounds == 1  # the whole payload fits the granted window at once

    def test_message_split_across_many_frames_both_ways(self) -> None:
        """600 KiB each way, fed to the peer a few bytes at a time, arrives intact."""
        client, server, sid = connected_pair()
        up = bytes(range(256)) * 2400
        down = bytes(reversed(range(256))) * 2400
        client.send(sid, up)
        client.close_stream(sid)
        got: dict[str, bytearray] = {"server": bytearray(), "client": bytearray()}
        done = {"server": False, "client": False}
        replied = False
        for _ in range(200):
            if done["server"] and done["client"]:
                break
            for name, me, peer in (("server", server, client), ("client", client, server)):
                wire = peer.data_to_send()
                for i in range(0, len(wire), 4093):  # frames cut at odd places
                    for event in me.receive_data(wire[i : i + 4093]):
                        if isinstance(event, DataReceived):
                            got[name] += event.data
                        done[name] |= isinstance(event, StreamClosed)
            if done["server"] and not replied:
                server.send(sid, down)
                server.close_stream(sid)
                replied = True
        assert bytes(got["server"]) == up
        assert bytes(got["client"]) == down

    def test_one_byte_at_a_time(self) -> None:
        """Every header and body may be split anywhere by the WebSocket layer."""
        server = Session(client=False)
        events = []
        for byte in SYN_1 + DATA_1_LEN_45 + REQUEST_BODY + FIN_1:
            events += server.receive_data(bytes([byte]))
        data = b"".join(e.data for e in events if isinstance(e, DataReceived))
        assert data == REQUEST_BODY
        assert events[0] == StreamOpened(1)
        assert events[-1] == StreamClosed(1)
