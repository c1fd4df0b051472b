"""The records of what a pass does and did: the plan's actions, outcomes, the report.

Frozen and free of I/O, like `model`, whose desired state they are planned from.
A field that could hold a value is a `Secret`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from secret_agent.errors import SecretRefusedError
from secret_agent.model import NO_VERSION, EnvVariable, FileState, Version
from secret_agent.redact import Secret


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteFile:
    """Write (or fix the mode of) one secret's file."""

    secret: str
    path: str
    content: Secret
    sha: str
    version: Version = NO_VERSION
    mode_only: bool = False
    # Where the file that was there before us is kept ("" if none). With `make_backup`
    # the target now holds a file we did not write, to be moved there first.
    backup: str = ""
    make_backup: bool = False
    backup_mode: int = 0  # the original's mode, given back with it (0: unknown)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepFile:
    """A secret's file that already holds the right bytes and mode."""

    secret: str
    path: str
    sha: str
    version: Version = NO_VERSION
    backup: str = ""
    backup_mode: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveFile:
    """Remove a file we wrote for a secret that is gone, if it still holds our bytes,
    and put back the original kept at `restore` ("" if none)."""

    secret: str
    path: str
    sha: str
    restore: str = ""
    restore_mode: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetFile:
    """Drop a ledger entry without touching disk (already gone, foreign, or prune off)."""

    secret: str
    path: str
    state: FileState
    # The original kept beside it: put back when the target is gone (REMOVED), else
    # left where it is and reported.
    backup: str = ""
    backup_mode: int = 0
    # Keep the ledger entry, marked `left` (prune off, a backup beside it: see plan).
    keep: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteEnvFile:
    """Write the generated env file (or leave it, when `unchanged`)."""

    path: str
    content: Secret
    sha: str
    variables: tuple[str, ...]
    env_format: str = ""
    # Which secret, at which version, each variable written comes from (the ledger's).
    written: tuple[EnvVariable, ...] = ()
    unchanged: bool = False
    backup: str = ""
    make_backup: bool = False
    backup_mode: int = 0


FileAction = WriteFile | KeepFile | RemoveFile | ForgetFile


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What one pass will do: file actions, the env file, and per-secret refusals."""

    files: tuple[FileAction, ...] = ()
    env_file: WriteEnvFile | None = None
    refused: tuple[SecretRefusedError, ...] = ()
    # Why the env file is not written this pass ("" when it is, or when it is off).
    env_refused: str = ""

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
    # The original kept as NAME.secret-agent-orig: made now, kept, or put back.
    backup: str = ""
    backup_action: str = ""  # "made" | "kept" | "restored" | "" (none)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """The result of one pass, for logs, the status file and the exit code."""

    outcomes: tuple[Outcome, ...] = ()
    refused: tuple[SecretRefusedError, ...] = ()
    requests: int = 0
    bytes_written: int = 0
    secrets: int = 0
    # (secret name, why) of each secret whose answer from Coder was unusable this pass.
    failed: tuple[tuple[str, str], ...] = field(default=())
    # (secret name, env_name) of each variable written to the env file.
    variables: tuple[tuple[str, str], ...] = ()
    # DesiredState.fingerprint() of what this pass applied ("" when unknown).
    fingerprint: str = ""

    @property
    def ok(self) -> bool:
        """True when every secret applied: nothing refused, nothing failed."""
        return (
            not self.refused
            and not self.failed
            and all(o.state not in (FileState.FAILED, FileState.REFUSED) for o in self.outcomes)
        )
