"""Apply: carry out a `Plan`, one action at a time, each isolated from the others.

A failure on one target becomes that target's outcome and the pass goes on. The new
ledger records what is on disk afterwards: a target whose write failed keeps its old
entry (the old bytes are still there and still ours), so nothing is forgotten
because of an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

from secret_agent import files, originals
from secret_agent.actions import (
    ForgetFile,
    KeepFile,
    Outcome,
    Plan,
    RemoveFile,
    WriteEnvFile,
    WriteFile,
)
from secret_agent.errors import (
    ApplyError,
    PathRefusedError,
    SecretRefusedError,
    SymlinkRefusedError,
    UnsafePathError,
)
from secret_agent.ledger import ENV_FILE_SECRET, Ledger, LedgerEntry
from secret_agent.model import FileState
from secret_agent.plan import ENV_FILE_MODE

SHORT: int = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """What applying a plan did."""

    outcomes: tuple[Outcome, ...]
    refused: tuple[SecretRefusedError, ...]
    ledger: Ledger
    bytes_written: int


def apply_plan(
    plan: Plan,
    ledger: Ledger,
    *,
    roots: Sequence[str],
    file_mode: int,
    dir_mode: int,
) -> Applied:
    """Execute every action of `plan`; never raises for a single target's failure."""
    entries = dict(ledger.entries)
    outcomes: list[Outcome] = []
    refused: list[SecretRefusedError] = []
    written = 0
    for action in plan.files:
        if isinstance(action, WriteFile):
            outcome, size, refusal = _write(
                action, roots=roots, file_mode=file_mode, dir_mode=dir_mode
            )
            written += size
            if refusal is not None:
                refused.append(refusal)
            elif outcome.state is not FileState.FAILED:
                entries[action.path] = LedgerEntry(
                    path=action.path,
                    secret=action.secret,
                    sha=action.sha,
                    version=action.version,
                    backup=outcome.backup,
                    backup_mode=action.backup_mode if outcome.backup else 0,
                )
        elif isinstance(action, KeepFile):
            outcome = _outcome(action.secret, action.path, FileState.UNCHANGED, action.sha)
            entries[action.path] = LedgerEntry(
                path=action.path,
                secret=action.secret,
                sha=action.sha,
                version=action.version,
                backup=action.backup,
                backup_mode=action.backup_mode,
            )
        elif isinstance(action, RemoveFile):
            outcome = _remove(action, roots=roots if action.secret else None)
            if outcome.state is not FileState.FAILED:
                entries.pop(action.path, None)
        else:
            outcome = _forget(action, roots=roots if action.secret else None)
            entry = entries.pop(action.path, None)
            if action.keep and entry is not None:
                entries[action.path] = dataclasses.replace(entry, left=True)
        outcomes.append(outcome)
    _sweep_untouched(plan, roots)
    if plan.env_file is not None:
        outcome, size = _write_env(plan.env_file, dir_mode=dir_mode)
        written += size
        outcomes.append(outcome)
        if outcome.state is not FileState.FAILED:
            entries[plan.env_file.path] = LedgerEntry(
                path=plan.env_file.path,
                secret=ENV_FILE_SECRET,
                sha=plan.env_file.sha,
                env_format=plan.env_file.env_format,
                variables=plan.env_file.written,
                backup=outcome.backup,
                backup_mode=plan.env_file.backup_mode if outcome.backup else 0,
            )
    elif plan.env_refused:
        outcomes.append(_outcome(ENV_FILE_SECRET, "", FileState.REFUSED, error=plan.env_refused))
    return Applied(
        outcomes=tuple(outcomes),
        refused=tuple(refused),
        ledger=Ledger.of(entries.values(), ledger.catalog),
        bytes_written=written,
    )


def _sweep_untouched(plan: Plan, roots: Sequence[str]) -> None:
    """Sweep the temp files of killed writers (`files.sweep_temps`) from the directory
    of every target this pass visits without writing; writes and removals sweep
    their own directory."""
    visited: dict[str, tuple[str, Sequence[str] | None]] = {}  # directory -> a target in it
    for action in plan.files:
        if isinstance(action, KeepFile | ForgetFile) or (
            isinstance(action, WriteFile) and action.mode_only
        ):
            within = roots if action.secret else None
            visited.setdefault(os.path.dirname(action.path), (action.path, within))
    env = plan.env_file
    if env is not None and env.unchanged:
        visited.setdefault(os.path.dirname(env.path), (env.path, None))
    for target, within in visited.values():
        with contextlib.suppress(UnsafePathError, ApplyError, OSError):
            files.sweep_temps(target, roots=within)


def _outcome(
    secret: str,
    path: str,
    state: FileState,
    sha: str = "",
    error: str = "",
    *,
    backup: str = "",
    backup_action: str = "",
) -> Outcome:
    return Outcome(
        secret=secret,
        path=path,
        state=state,
        short_sha=sha[:SHORT],
        error=error,
        backup=backup,
        backup_action=backup_action if backup else "",
    )


def _write(
    action: WriteFile, *, roots: Sequence[str], file_mode: int, dir_mode: int
) -> tuple[Outcome, int, SecretRefusedError | None]:
    try:
        backed_up = action.make_backup and originals.keep(action.path, action.backup, roots=roots)
        result = files.write_atomic(
            action.path,
            action.content.reveal().encode(),
            roots=roots,
            file_mode=file_mode,
            dir_mode=dir_mode,
        )
    except UnsafePathError as exc:
        # A symlink planted between plan and write: refused like one seen at plan time.
        cls = SymlinkRefusedError if exc.symlink else PathRefusedError
        refusal = cls(exc.reason, secret=action.secret)
        return _outcome(action.secret, action.path, FileState.REFUSED, error=str(exc)), 0, refusal
    except (ApplyError, OSError) as exc:
        return _outcome(action.secret, action.path, FileState.FAILED, error=_why(exc)), 0, None
    if result.written:
        state = FileState.WRITTEN
    elif result.mode_fixed:
        state = FileState.MODE_FIXED
    else:
        state = FileState.UNCHANGED
    backup, made = _backup_of(action.backup, action.make_backup, backed_up)
    outcome = _outcome(
        action.secret, action.path, state, result.sha, backup=backup, backup_action=made
    )
    return outcome, result.bytes_written, None


def _backup_of(planned: str, make: bool, made: bool) -> tuple[str, str]:
    """The backup a target has after a write: ("" when none), and "made" or "kept"."""
    if make:
        return (planned, "made") if made else ("", "")
    return planned, ""  # carried forward: shown in status, not news


def _write_env(action: WriteEnvFile, *, dir_mode: int) -> tuple[Outcome, int]:
    if action.unchanged:
        return _outcome(ENV_FILE_SECRET, action.path, FileState.UNCHANGED, action.sha), 0
    try:
        backed_up = action.make_backup and originals.keep(action.path, action.backup, roots=None)
        result = files.write_atomic(
            action.path,
            action.content.reveal().encode(),
            roots=None,
            file_mode=ENV_FILE_MODE,
            dir_mode=dir_mode,
        )
    except UnsafePathError as exc:
        return _outcome(ENV_FILE_SECRET, action.path, FileState.REFUSED, error=_why(exc)), 0
    except (ApplyError, OSError) as exc:
        return _outcome(ENV_FILE_SECRET, action.path, FileState.FAILED, error=_why(exc)), 0
    state = FileState.WRITTEN if result.written else FileState.MODE_FIXED
    backup, made = _backup_of(action.backup, action.make_backup, backed_up)
    outcome = _outcome(
        ENV_FILE_SECRET, action.path, state, result.sha, backup=backup, backup_action=made
    )
    return outcome, result.bytes_written


def _remove(action: RemoveFile, *, roots: Sequence[str] | None) -> Outcome:
    try:
        state = files.remove_if_unchanged(action.path, action.sha, roots=roots)
    except (UnsafePathError, ApplyError, OSError) as exc:
        return _outcome(action.secret, action.path, FileState.FAILED, error=_why(exc))
    if state is FileState.REMOVED and action.restore:
        return _restore(
            action.secret, action.path, action.restore, action.restore_mode, state, roots=roots
        )
    return _outcome(
        action.secret, action.path, state, action.sha, backup=action.restore, backup_action="kept"
    )


def _forget(action: ForgetFile, *, roots: Sequence[str] | None) -> Outcome:
    if action.state is FileState.REMOVED and action.backup:
        return _restore(
            action.secret, action.path, action.backup, action.backup_mode, action.state, roots=roots
        )
    return _outcome(
        action.secret, action.path, action.state, backup=action.backup, backup_action="kept"
    )


def _restore(
    secret: str,
    path: str,
    backup: str,
    mode: int,
    state: FileState,
    *,
    roots: Sequence[str] | None,
) -> Outcome:
    """Put the original kept at `backup` back at `path` (with its own `mode`, if known),
    now that our file is gone."""
    try:
        restored = originals.put_back(path, backup, mode=mode, roots=roots)
    except (UnsafePathError, ApplyError, OSError) as exc:
        return _outcome(
            secret,
            path,
            state,
            error=f"original not put back: {_why(exc)}",
            backup=backup,
            backup_action="kept",
        )
    return _outcome(
        secret, path, state, backup=backup, backup_action="restored" if restored else "kept"
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ApplyError):
        return f"{exc.strerror or type(exc).__name__}"
    return str(exc)
