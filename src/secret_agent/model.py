"""The records of what should be: Coder's metadata, the desired state, what is on disk.

The plan's actions and a pass's outcomes live in `actions`: `exec`'s fast path needs
only the records here, and each frozen dataclass costs an import about a millisecond.
Everything here is frozen and does no I/O. A field that could hold a value is a
`Secret`, never a `str`, so a record can be logged or repr'd without leaking.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

from secret_agent.redact import Secret


class Version(NamedTuple):
    """What must change for a secret's value to be fetched again; kept in the ledger
    as a list of the three strings, in this order."""

    updated_at: str
    env_name: str
    file_path: str


NO_VERSION: Final = Version("", "", "")


class EnvFormat(StrEnum):
    """The env-file formats (README "What it writes"), each exact for the readers it names."""

    POSIX = "posix"
    DOTENV = "dotenv"
    SYSTEMD = "systemd"
    DOCKER = "docker"
    JSON = "json"


class SourceKind(StrEnum):
    """Where secret values come from (`values.source`)."""

    AUTO = "auto"
    INLINE = "inline"
    AGENT = "agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretMeta:
    """What Coder's REST API says about one secret: everything but the value."""

    name: str
    id: str = ""
    description: str = ""
    env_name: str = ""
    file_path: str = ""
    enabled: bool = True
    created_at: str = ""
    updated_at: str = ""

    @property
    def version(self) -> Version:
        """What must change for the value to be fetched again (docs/file-writing.md §9)."""
        return Version(self.updated_at, self.env_name, self.file_path)


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredSecret:
    """One secret as it should appear in the workspace."""

    name: str
    env_name: str
    file_path: str
    value: Secret
    version: Version = NO_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredState:
    """Every enabled secret, with its value, in name order."""

    secrets: tuple[DesiredSecret, ...]
    # How many HTTP requests (or RPC calls) building this state took.
    requests: int = 0
    # Secrets whose value this state lacks, and why (never a value): their answer was
    # unusable this time, or (a state read back from disk, `recall`) their value could
    # not be read back. Each keeps its previous state in `secrets` when there was one;
    # either way, nothing of it may be removed or rewritten because of the lack.
    failed: tuple[tuple[str, str], ...] = ()

    def fingerprint(self) -> str:
        """A hash that changes when any secret's target or value does (never a value)."""
        digest = hashlib.sha256()
        for s in sorted(self.secrets, key=lambda s: s.name):
            value = hashlib.sha256(s.value.reveal().encode()).hexdigest()
            digest.update(f"{s.name}\0{s.env_name}\0{s.file_path}\0{value}\n".encode())
        return digest.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvVariable:
    """One variable of the env file as written: its name, its secret and that version."""

    name: str
    secret: str
    version: Version = NO_VERSION


class FileState(StrEnum):
    """What a pass found or did for one target."""

    WRITTEN = "written"
    UNCHANGED = "unchanged"
    MODE_FIXED = "mode_fixed"
    REMOVED = "removed"
    FOREIGN = "foreign"  # changed by someone else since we wrote it: left alone
    LEFT = "left"  # no longer wanted, but sync.prune is off: left in place
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """A target as it is on disk now (from `files.observe`)."""

    path: str
    exists: bool
    sha: str = ""
    mode: int = 0
    is_symlink: bool = False
    is_file: bool = False
