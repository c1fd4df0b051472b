"""The dev server's JSON file format: read a seed or persist file, write one atomically.

One format serves both uses, so a persisted store can be handed around as a seed::

    {"users": [{"username": "developer", "id": "<uuid>", "tokens": ["..."],
                "agent_tokens": ["<uuid>"],
                "secrets": [{"name": "...", "value": "...", "env_name": "...",
                             "file_path": "...", "description": "...", "enabled": true,
                             "id": "<uuid>", "created_at": "...", "updated_at": "..."}]}]}

Only `username`, and each secret's `name` and `value`, are required. Reading checks the
shape (unknown keys included, to catch typos) and raises `ConfigError` naming the file
and the key; Coder's rules on the fields themselves are the store's business. Values
read here are wrapped in `Secret` at once, and no error message quotes one.

This module knows nothing of HTTP or of the store's locking.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from secret_agent.devserver.records import StoredSecret, User
from secret_agent.errors import ConfigError
from secret_agent.redact import Secret

StrPath = str | os.PathLike[str]

_T = TypeVar("_T")

# Far above any store Coder's caps allow (50 secrets x 200 KiB per user) for a few
# hundred users, and a bound on what a mistaken path (a disk image) makes us read.
MAX_FILE_BYTES: Final = 64 * 1024 * 1024

_USER_KEYS: Final = frozenset({"username", "id", "tokens", "agent_tokens", "secrets"})
_SECRET_KEYS: Final = frozenset(
    {
        "name", "value", "description", "env_name", "file_path", "enabled", "id",
        "created_at", "updated_at",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedSecret:
    """One secret as a seed or persist file describes it."""

    name: str
    value: Secret
    description: str = ""
    env_name: str = ""
    file_path: str = ""
    enabled: bool = True
    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedUser:
    """One user, with its tokens and secrets, as a seed or persist file describes it."""

    username: str
    id: str | None = None
    tokens: tuple[str, ...] = ()
    agent_tokens: tuple[str, ...] = ()
    secrets: tuple[SeedSecret, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountDoc:
    """What `document` writes for one user."""

    user: User
    tokens: Iterable[str]
    agent_tokens: Iterable[str]
    secrets: Iterable[StoredSecret]


def format_stamp(moment: datetime) -> str:
    """`moment` as Coder-style RFC3339 in UTC with microseconds (fixed width)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str) -> datetime:
    """An RFC3339 time with an offset, as an aware UTC datetime.

    Raises:
        ValueError: not ISO 8601, or without a time zone.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("has no time zone")
    return moment.astimezone(UTC)


class _Reader:
    """Walks the decoded JSON, raising `ConfigError` that names file and key."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key or None, file=self.path)

    def expect(self, obj: object, kind: type[_T], key: str, what: str) -> _T:
        # bool is an int in Python; JSON true must not pass for a number or a string.
        if not isinstance(obj, kind) or (kind is not bool and isinstance(obj, bool)):
            raise self.fail(key, f"must be {what}, not {type(obj).__name__}")
        return obj

    def keys(self, obj: dict[str, object], allowed: frozenset[str], key: str) -> None:
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise self.fail(key, f"unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")

    def text(self, obj: dict[str, object], name: str, key: str, *, required: bool) -> str:
        if name not in obj:
            if required:
                raise self.fail(key, f"missing required key {name!r}")
            return ""
        return self.expect(obj[name], str, f"{key}.{name}", "a string")

    def strings(self, obj: dict[str, object], name: str, key: str) -> tuple[str, ...]:
        items = self.expect(obj.get(name, []), list, f"{key}.{name}", "a list")
        return tuple(
            self.expect(t, str, f"{key}.{name}[{i}]", "a string") for i, t in enumerate(items)
        )

    def stamp(self, obj: dict[str, object], name: str, key: str) -> datetime | None:
        raw = self.text(obj, name, key, required=False)
        if not raw:
            return None
        try:
            return parse_stamp(raw)
        except ValueError as exc:
            raise self.fail(f"{key}.{name}", f"must be an RFC3339 time ({exc})") from None

    def secret(self, obj: object, key: str) -> SeedSecret:
        entry = self.expect(obj, dict, key, "an object")
        self.keys(entry, _SECRET_KEYS, key)
        enabled = entry.get("enabled", True)
        return SeedSecret(
            name=self.text(entry, "name", key, required=True),
            value=Secret(self.text(entry, "value", key, required=True)),
            description=self.text(entry, "description", key, required=False),
            env_name=self.text(entry, "env_name", key, required=False),
            file_path=self.text(entry, "file_path", key, required=False),
            enabled=self.expect(enabled, bool, f"{key}.enabled", "true or false"),
            id=self.text(entry, "id", key, required=False) or None,
            created_at=self.stamp(entry, "created_at", key),
            updated_at=self.stamp(entry, "updated_at", key),
        )

    def user(self, obj: object, key: str) -> SeedUser:
        entry = self.expect(obj, dict, key, "an object")
        self.keys(entry, _USER_KEYS, key)
        found = self.expect(entry.get("secrets", []), list, f"{key}.secrets", "a list")
        return SeedUser(
            username=self.text(entry, "username", key, required=True),
            id=self.text(entry, "id", key, required=False) or None,
            tokens=self.strings(entry, "tokens", key),
            agent_tokens=self.strings(entry, "agent_tokens", key),
            secrets=tuple(self.secret(s, f"{key}.secrets[{i}]") for i, s in enumerate(found)),
        )


def read_store_file(path: StrPath, *, missing_ok: bool = False) -> list[SeedUser]:
    """The users a seed or persist file describes, shape-checked.

    With `missing_ok`, a file that does not exist describes no users.

    Raises:
        ConfigError: the file is unreadable, not JSON, or not in the format above;
            the message names the file and, where there is one, the key.
    """
    reader = _Reader(os.fspath(path))
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        if missing_ok:
            return []
        raise reader.fail("", "no such file") from None
    except OSError as exc:
        raise reader.fail("", f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise reader.fail("", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        # The message of a JSONDecodeError names a position, never the text there.
        raise reader.fail("", f"not valid JSON: {exc}") from None
    top = reader.expect(document, dict, "", 'a JSON object like {"users": [...]}')
    reader.keys(top, frozenset({"users"}), "")
    users = reader.expect(top.get("users", []), list, "users", "a list")
    return [reader.user(u, f"users[{i}]") for i, u in enumerate(users)]


def document(accounts: Iterable[AccountDoc]) -> dict[str, object]:
    """The file format for the accounts, values revealed.

    Users and secrets are sorted, so an unchanged store writes identical bytes.
    """
    return {
        "users": [
            {
                "username": a.user.username,
                "id": a.user.id,
                "tokens": list(a.tokens),
                "agent_tokens": list(a.agent_tokens),
                "secrets": [
                    {
                        "id": s.id,
                        "name": s.name,
                        "value": s.value.reveal(),
                        "description": s.description,
                        "env_name": s.env_name,
                        "file_path": s.file_path,
                        "enabled": s.enabled,
                        "created_at": s.created_at,
                        "updated_at": s.updated_at,
                    }
                    for s in sorted(a.secrets, key=lambda s: s.name)
                ],
            }
            for a in sorted(accounts, key=lambda a: a.user.username)
        ]
    }


def write_store_file(path: StrPath, document: dict[str, object]) -> None:
    """Replace `path` with `document` as JSON, atomically and readable by the owner only.

    A temp file is created beside the target (0600, `O_EXCL | O_NOFOLLOW`), fchmod'ed
    0600 whatever the umask, written and fsynced, then renamed over the target; the
    directory is fsynced so the rename survives a crash. Any failure before the rename
    removes the temp file and leaves the old file as it was.

    Raises:
        OSError: the directory is not writable, the disk is full, and so on.
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    temp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
    data = json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # open(2) applies the umask; fchmod does not.
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
