"""The records that flow through one pass: fetch -> desired state -> plan -> apply -> report.

Everything here is frozen and does no I/O. A field that could hold a value is a
`Secret`, never a `str`, so a record can be logged or repr'd without leaking.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from secret_agent.errors import SecretRefusedError
from secret_agent.redact import Secret


class EnvFormat(StrEnum):
    """The env-file formats of product.md, each exact for the readers it names."""

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
    def version(self) -> tuple[str, str, str]:
        """What must change for the value to be fetched again (product.md)."""
        return (self.updated_at, self.env_name, self.file_path)


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredSecret:
    """One secret as it should appear in the workspace."""

    name: str
    env_name: str
    file_path: str
    value: Secret
    version: tuple[str, str, str] = ("", "", "")


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredState:
    """Every enabled secret, with its value, in name order."""

    secrets: tuple[DesiredSecret, ...]
    # How many HTTP requests (or RPC calls) building this state took.
    requests: int = 0

    def fingerprint(self) -> str:
        """A hash that changes when any secret's target or value does (never a value)."""
        digest = hashlib.sha256()
        for s in sorted(self.secrets, key=lambda s: s.name):
            value = hashlib.sha256(s.value.reveal().encode()).hexdigest()
            digest.update(f"{s.name}\0{s.env_name}\0{s.file_path}\0{value}\n".encode())
        return digest.hexdigest()


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


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteFile:
    """Write (or fix the mode of) one secret's file."""

    secret: str
    path: str
    content: Secret
    sha: str
    mode_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepFile:
    """A secret's file that already holds the right bytes and mode."""

    secret: str
    path: str
    sha: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveFile:
    """Remove a file we wrote for a secret that is gone, if it still holds our bytes."""

    secret: str
    path: str
    sha: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetFile:
    """Drop a ledger entry without touching disk (already gone, foreign, or prune off)."""

    secret: str
    path: str
    state: FileState


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteEnvFile:
    """Write the generated env file (or leave it, when `unchanged`)."""

    path: str
    content: Secret
    sha: str
    variables: tuple[str, ...]
    unchanged: bool = False


FileAction = WriteFile | KeepFile | RemoveFile | ForgetFile


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What one pass will do: file actions, the env file, and per-secret refusals."""

    files: tuple[FileAction, ...] = ()
    env_file: WriteEnvFile | None = None
    refused: tuple[SecretRefusedError, ...] = ()

    @property
    def changes(self) -> int:
        """How many actions would touch the disk."""
        touching = [a for a in self.files if isinstance(a, WriteFile | RemoveFile)]
        env = 1 if self.env_file is not None and not self.env_file.unchanged else 0
        return len(touching) + env


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one target (a secret's file, or the env file)."""

    secret: str
    path: str
    state: FileState
    short_sha: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """The result of one pass, for logs, the status file and the exit code."""

    outcomes: tuple[Outcome, ...] = ()
    refused: tuple[SecretRefusedError, ...] = ()
    requests: int = 0
    bytes_written: int = 0
    secrets: int = 0
    errors: tuple[str, ...] = field(default=())
    # (secret name, env_name) of each variable written to the env file.
    variables: tuple[tuple[str, str], ...] = ()
    # DesiredState.fingerprint() of what this pass applied ("" when unknown).
    fingerprint: str = ""

    @property
    def ok(self) -> bool:
        """True when every secret applied: nothing refused, nothing failed."""
        return (
            not self.refused
            and not self.errors
            and all(o.state not in (FileState.FAILED, FileState.REFUSED) for o in self.outcomes)
        )
