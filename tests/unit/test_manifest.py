"""coder/manifest.py against protobuf written by hand from reference/coder-agent-rpc.md §4.

Tags and varints are spelled out byte by byte, with unknown fields (nested, fixed32,
fixed64, numbers above 19) before, inside and after the secrets, as §8 asks.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secret_agent.coder.errors import ManifestError
from secret_agent.coder.manifest import (
    GET_MANIFEST_RPC,
    ManifestSecret,
    decode_get_manifest_request,
    decode_manifest_secrets,
    encode_get_manifest_request,
    encode_manifest,
)
from secret_agent.redact import Secret

h = bytes.fromhex

# §5.4: Manifest{secrets: [{GITHUB_TOKEN, ~/.config/gh/token, s3cr3t}]}.
REFERENCE = h(
    "9a 01 2a"
    "0a 0c 47 49 54 48 55 42 5f 54 4f 4b 45 4e"
    "12 12 7e 2f 2e 63 6f 6e 66 69 67 2f 67 68 2f 74 6f 6b 65 6e"
    "1a 06 73 33 63 72 33 74"
)

UNKNOWN_BEFORE = h(
    "0a 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"  # 1 agent_id: 16 bytes
    "10 01"  # 2 git_auth_configs: varint 1
    "1a 07 0a 01 4b 12 02 76 76"  # 3 environment_variables: map entry {"K": "vv"}
    "4a 05 0a 03 08 e7 07"  # 9 derp_map: nested {1: {1: 999}}
    "99 06 01 02 03 04 05 06 07 08"  # 99, wire type 1: fixed64
    "95 06 01 02 03 04"  # 98, wire type 5: fixed32
)
SECRET_WITH_UNKNOWNS = h(
    "9a 01 1b"  # 19 secrets, 27 bytes
    "0a 03 41 5f 42"  # 1 env_name "A_B"
    "20 05"  # 4 (unknown): varint 5
    "12 04 2f 74 2f 66"  # 2 file_path "/t/f"
    "a2 01 02 08 01"  # 20 (unknown): nested {1: 1}
    "2d 01 02 03 04"  # 5 (unknown): fixed32
    "1a 02 76 31"  # 3 value "v1"
)
UNKNOWN_AFTER = h(
    "a2 01 03 0a 01 00"  # 20 egress: nested {1: "\x00"}
    "98 06 96 01"  # 99, wire type 0: varint 150
)
FILE_ONLY_SECRET = h("9a 01 07 12 02 2f 66 1a 01 78")  # {file_path "/f", value "x"}
LATE_WORKSPACE_NAME = h("82 01 02 77 73")  # 16 workspace_name "ws", out of order


def as_tuples(secrets: tuple[ManifestSecret, ...]) -> list[tuple[str, str, str]]:
    return [(s.env_name, s.file_path, s.value.reveal()) for s in secrets]


class TestDecode:
    def test_reference_manifest(self) -> None:
        """§5.4's bytes give the one secret, value wrapped in Secret."""
        assert decode_manifest_secrets(REFERENCE) == (
            ManifestSecret(
                env_name="GITHUB_TOKEN", file_path="~/.config/gh/token", value=Secret("s3cr3t")
            ),
        )

    def test_unknown_fields_everywhere_are_skipped(self) -> None:
        """Unknown fields before, inside and after field 19 do not disturb the secrets."""
        wire = (
            UNKNOWN_BEFORE
            + SECRET_WITH_UNKNOWNS
            + UNKNOWN_AFTER
            + FILE_ONLY_SECRET
            + LATE_WORKSPACE_NAME
        )
        assert as_tuples(decode_manifest_secrets(wire)) == [("A_B", "/t/f", "v1"), ("", "/f", "x")]

    def test_only_unknown_fields_means_no_secrets(self) -> None:
        """A manifest from a server before v2.33 has no field 19: no secrets."""
        assert decode_manifest_secrets(UNKNOWN_BEFORE + UNKNOWN_AFTER) == ()

    def test_empty_manifest(self) -> None:
        """A 0-byte Message is a valid, empty Manifest."""
        assert decode_manifest_secrets(b"") == ()

    def test_multiple_secrets_keep_server_order(self) -> None:
        """Each field 19 occurrence is one secret, in wire order."""
        wire = (
            FILE_ONLY_SECRET + REFERENCE + h("9a 01 05 0a 03 45 4e 56")
        )  # env-only "ENV", no value
        assert as_tuples(decode_manifest_secrets(wire)) == [
            ("", "/f", "x"),
            ("GITHUB_TOKEN", "~/.config/gh/token", "s3cr3t"),
            ("ENV", "", ""),
        ]

    def test_unicode_and_control_characters_survive(self) -> None:
        """A value is any UTF-8: multibyte, newlines, even NUL (refused later, not here)."""
        value = "é🔑\n\t\x00end"
        raw = value.encode()
        wire = h("9a 01") + bytes([2 + len(raw)]) + h("1a") + bytes([len(raw)]) + raw
        assert as_tuples(decode_manifest_secrets(wire)) == [("", "", value)]

    def test_non_utf8_value_names_the_secret_not_the_value(self) -> None:
        """A value that is not UTF-8 fails the whole manifest, naming env_name and file_path."""
        wire = h("9a 01 0e 0a 03 41 5f 42 12 02 2f 66 1a 03 ff fe 41")
        with pytest.raises(ManifestError) as info:
            decode_manifest_secrets(wire)
        text = str(info.value)
        assert "'A_B'" in text
        assert "'/f'" in text
        assert "3 bytes" in text
        assert not any(shown in text for shown in ("\\xff", "0xff", "\xff", "\xfe"))
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__

    @pytest.mark.parametrize(
        "wire",
        [
            "9a 01 2a 0a 0c 47",  # secrets claims 42 bytes, 3 follow
            "9a",  # key varint cut short
            "0f 00",  # wire type 7
            "0e 00",  # wire type 6
            "0c",  # end-group without a start
            "99 06 01 02",  # fixed64 cut short
            "08 80",  # varint value cut short
            "9a 01 02 0a 05",  # secret whose env_name claims 5 bytes, none follow
            "9a 01 04 0a 02 ff fe",  # env_name not UTF-8 (proto3 strings must be)
        ],
        ids=[
            "short-len",
            "short-key",
            "wire7",
            "wire6",
            "stray-end-group",
            "short-fixed64",
            "short-varint",
            "short-nested",
            "bad-utf8-name",
        ],
    )
    def test_malformed_bytes_raise_manifest_error(self, wire: str) -> None:
        """Corrupt protobuf becomes ManifestError naming the size, not the bytes."""
        data = h(wire)
        with pytest.raises(
            ManifestError, match=f"malformed Manifest protobuf \\({len(data)} bytes\\)"
        ):
            decode_manifest_secrets(data)

    def test_bytearray_input_is_zeroed(self) -> None:
        """The caller's buffer holds scripts and env vars too: it is wiped after decoding."""
        buf = bytearray(UNKNOWN_BEFORE + REFERENCE)
        assert len(decode_manifest_secrets(buf)) == 1
        assert buf == bytes(len(UNKNOWN_BEFORE + REFERENCE))

    def test_bytearray_is_zeroed_on_error_too(self) -> None:
        """Even a manifest that fails to decode is wiped."""
        buf = bytearray(REFERENCE[:-1])
        with pytest.raises(ManifestError):
            decode_manifest_secrets(buf)
        assert not any(buf)

    def test_repr_hides_the_value(self) -> None:
        """A ManifestSecret's repr shows names, never the value."""
        [secret] = decode_manifest_secrets(REFERENCE)
        assert "s3cr3t" not in repr(secret)
        assert "GITHUB_TOKEN" in repr(secret)

    @given(st.binary(max_size=64))
    def test_arbitrary_bytes_decode_or_raise_manifest_error(self, data: bytes) -> None:
        """No input makes the decoder fail with anything but ManifestError."""
        with contextlib.suppress(ManifestError):
            decode_manifest_secrets(data)


class TestEncode:
    def test_plain_encoding_is_the_reference_bytes(self) -> None:
        """encode_manifest of §5.4's secret is §5.4's bytes."""
        assert encode_manifest([("GITHUB_TOKEN", "~/.config/gh/token", b"s3cr3t")]) == REFERENCE

    def test_empty_fields_are_absent_on_the_wire(self) -> None:
        """proto3: an empty env_name or value is simply not written."""
        assert encode_manifest([("", "/f", b"x")]) == FILE_ONLY_SECRET
        assert encode_manifest([]) == b""

    def test_extra_fields_surround_the_secrets(self) -> None:
        """extra_fields writes fields 1-18 first and field 20 last, and still decodes."""
        secrets = [("A", "~/a", b"1"), ("", "/b", b"2")]
        wire = encode_manifest(secrets, extra_fields=True)
        assert wire.startswith(h("0a 10"))  # agent_id first, as coderd orders fields
        assert h("82 01 09") + b"workspace" in wire  # field 16, a two-byte tag
        assert wire.rindex(h("9a 01")) < wire.rindex(h("a2 01"))  # field 20 after 19
        assert as_tuples(decode_manifest_secrets(wire)) == [("A", "~/a", "1"), ("", "/b", "2")]

    def test_padding_makes_a_large_manifest(self) -> None:
        """padding adds a script body of that size before the secrets."""
        wire = encode_manifest([("A", "", b"v")], padding=300_000)
        assert len(wire) > 300_000
        assert wire.endswith(h("9a 01 06 0a 01 41 1a 01 76"))
        assert as_tuples(decode_manifest_secrets(wire)) == [("A", "", "v")]

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(
        secrets=st.lists(
            st.tuples(st.text(max_size=20), st.text(max_size=20), st.text(max_size=40)), max_size=6
        ),
        extra_fields=st.booleans(),
    )
    def test_round_trip(self, secrets: list[tuple[str, str, str]], extra_fields: bool) -> None:
        """Whatever we encode (with or without unknown fields) decodes to the same secrets."""
        wire = encode_manifest(
            [(e, f, v.encode()) for e, f, v in secrets], extra_fields=extra_fields
        )
        assert as_tuples(decode_manifest_secrets(wire)) == secrets


class TestRequest:
    def test_request_is_empty(self) -> None:
        """GetManifestRequest has no fields: 0 bytes (§4)."""
        assert encode_get_manifest_request() == b""

    def test_request_decoding_tolerates_unknown_fields(self) -> None:
        """A dev server accepts an empty request, or one with fields it does not know."""
        decode_get_manifest_request(b"")
        decode_get_manifest_request(h("08 01 12 01 78"))

    def test_malformed_request_raises(self) -> None:
        """A corrupt request is ManifestError naming its size."""
        with pytest.raises(ManifestError, match="2 bytes"):
            decode_get_manifest_request(h("12 05"))

    def test_rpc_name(self) -> None:
        """The method path is §3.6's 33-byte name."""
        assert GET_MANIFEST_RPC == "/coder.agent.v2.Agent/GetManifest"
        assert len(GET_MANIFEST_RPC) == 33
