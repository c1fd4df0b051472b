"""The agent API's protobuf messages that secret-agent needs, via the protobuf runtime.

`GetManifest` answers with a `Manifest` (`docs/agent-rpc.md` §4) whose field
19 lists the workspace owner's secrets with their values. Everything else in it
(template env vars, script bodies, the DERP map) is sensitive and irrelevant here: the
schema below declares only field 19, so protobuf keeps the rest as unknown fields, and
`decode_manifest_secrets` clears the message right after reading the secrets. Nothing
here logs, and no message carries a value or payload bytes; sizes and names only.

There is no protoc in the build, so the descriptor is assembled at import time from a
`FileDescriptorProto` into a private pool (a shared default pool would clash with any
other copy of `coder.agent.v2`). It describes exactly this `.proto`::

    syntax = "proto3";
    package coder.agent.v2;

    message WorkspaceSecret {
      string env_name = 1;   // empty: not injected as an env var
      string file_path = 2;  // empty: no file; "~/..." or absolute otherwise
      bytes value = 3;       // the decrypted value
    }

    message Manifest {
      // fields 1-18 (agent_id ... parent_id) and newer ones: unknown here, skipped
      repeated WorkspaceSecret secrets = 19;
    }

    message GetManifestRequest {}

    service Agent { rpc GetManifest(GetManifestRequest) returns (Manifest); }
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

# protobuf ships no type information; its dynamic classes stay private, as `Any`.
from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from secret_agent.coder.drpc import encode_varint
from secret_agent.coder.errors import ManifestError
from secret_agent.redact import Secret

PACKAGE: Final = "coder.agent.v2"
GET_MANIFEST_RPC: Final = f"/{PACKAGE}.Agent/GetManifest"
SECRETS_FIELD: Final = 19

_F: Final[Any] = descriptor_pb2.FieldDescriptorProto


def _build_classes() -> tuple[Any, Any]:
    """(Manifest, GetManifestRequest) message classes from the schema in the docstring."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="secret_agent/coder/agent_manifest.proto", package=PACKAGE, syntax="proto3"
    )
    secret = proto.message_type.add(name="WorkspaceSecret")
    for name, number, type_ in (
        ("env_name", 1, _F.TYPE_STRING),
        ("file_path", 2, _F.TYPE_STRING),
        ("value", 3, _F.TYPE_BYTES),
    ):
        secret.field.add(name=name, number=number, type=type_, label=_F.LABEL_OPTIONAL)
    proto.message_type.add(name="Manifest").field.add(
        name="secrets",
        number=SECRETS_FIELD,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=f".{PACKAGE}.WorkspaceSecret",
    )
    proto.message_type.add(name="GetManifestRequest")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in ("Manifest", "GetManifestRequest")
    )


_MANIFEST, _REQUEST = _build_classes()


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestSecret:
    """One `Manifest.secrets` entry; an empty string means the field was absent."""

    env_name: str
    file_path: str
    value: Secret


def decode_manifest_secrets(data: bytes | bytearray) -> tuple[ManifestSecret, ...]:
    """The secrets of a serialized `Manifest`, in server order; no field 19 gives `()`.

    A `bytearray` is zeroed before returning (the manifest also holds template env vars
    and scripts), so pass one you own. Values are decoded as UTF-8: Coder takes them
    as JSON strings, so anything else means corruption, and dropping that one secret
    would look like its deletion and get its file pruned.

    Raises:
        ManifestError: malformed protobuf (including non-UTF-8 names), or a value
            that is not UTF-8 (the message names that secret's env_name and file_path).
    """
    manifest = _MANIFEST()
    try:
        manifest.ParseFromString(data)
        return tuple(_to_secret(entry) for entry in manifest.secrets)
    except DecodeError as exc:
        raise ManifestError(f"malformed Manifest protobuf ({len(data)} bytes)") from exc
    finally:
        manifest.Clear()
        if isinstance(data, bytearray):
            data[:] = bytes(len(data))


def _to_secret(entry: Any) -> ManifestSecret:
    raw: bytes = entry.value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # `from None`: the UnicodeDecodeError's text quotes the offending value byte.
        raise ManifestError(
            f"secret with env_name {entry.env_name!r} and file_path {entry.file_path!r}:"
            f" value is not UTF-8 text ({len(raw)} bytes)"
        ) from None
    return ManifestSecret(env_name=entry.env_name, file_path=entry.file_path, value=Secret(text))


def encode_get_manifest_request() -> bytes:
    """The serialized (empty) `GetManifestRequest`."""
    encoded: bytes = _REQUEST().SerializeToString()
    return encoded


def decode_get_manifest_request(data: bytes) -> None:
    """Check a `GetManifestRequest` (the dev server's side); unknown fields are fine.

    Raises:
        ManifestError: malformed protobuf.
    """
    try:
        _REQUEST().ParseFromString(data)
    except DecodeError as exc:
        raise ManifestError(f"malformed GetManifestRequest ({len(data)} bytes)") from exc


def encode_manifest(
    secrets: Sequence[tuple[str, str, bytes]], *, extra_fields: bool = False, padding: int = 0
) -> bytes:
    """A serialized `Manifest` for the dev server and tests: `(env_name, file_path, value)`.

    `extra_fields` adds realistic fields 1-18 before the secrets, an unknown field in
    every secret and a field 20 after them, so decoders meet unknown fields as coderd
    sends them. `padding` adds a script of that many bytes before the secrets, to
    build manifests larger than a yamux window.
    """
    manifest = _MANIFEST()
    for env_name, file_path, value in secrets:
        manifest.secrets.add(env_name=env_name, file_path=file_path, value=value)
    encoded: bytes = manifest.SerializeToString()
    before = _len_field(10, _len_field(3, b"#" * padding)) if padding else b""
    if not extra_fields:
        return before + encoded
    secret_fields = b"".join(
        _len_field(SECRETS_FIELD, entry.SerializeToString() + _varint_field(7, 1))
        for entry in manifest.secrets
    )
    return _FIELDS_BEFORE_SECRETS + before + secret_fields + _FIELD_AFTER_SECRETS


def _varint_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3) + encode_varint(value)


def _len_field(number: int, payload: bytes) -> bytes:
    return encode_varint((number << 3) | 2) + encode_varint(len(payload)) + payload


# Stand-ins for Manifest fields 1-18 (§4.1), with nesting where coderd nests.
_FIELDS_BEFORE_SECRETS: Final = b"".join(
    (
        _len_field(1, bytes(range(16))),  # agent_id
        _varint_field(2, 1),  # git_auth_configs
        _len_field(3, _len_field(1, b"TEMPLATE_VAR") + _len_field(2, b"template value")),
        _len_field(4, b"/home/coder"),  # directory
        _varint_field(7, 1),  # disable_direct_connections
        _len_field(9, _len_field(1, _varint_field(1, 999) + _len_field(2, b"region"))),
        _len_field(10, _len_field(3, b"#!/bin/sh\necho startup\n")),  # scripts
        _len_field(13, b"owner"),  # owner_username
        _len_field(14, bytes(range(16, 32))),  # workspace_id
        _len_field(15, b"main"),  # agent_name
        _len_field(16, b"workspace"),  # workspace_name
        _len_field(18, bytes(range(32, 48))),  # parent_id
    )
)
# A newer field (egress, probably 20) after the secrets, as a server newer than us sends.
_FIELD_AFTER_SECRETS: Final = _len_field(20, _len_field(1, _varint_field(1, 1)))
