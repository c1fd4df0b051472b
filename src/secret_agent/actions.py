"""The records of what a pass does and did: the plan's actions, outcomes, the report.

Frozen and free of I/O, like `model`, whose desired state they are planned from.
A field that could hold a value is a `Secret`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from secret_agent.errors import SecretRefusedError
from secret_agent.model import FileState
from secret_agent.redact import Secret


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
