"""Report: a pass's outcomes as log events (and, later, the status file and STATUS=).

Event names are facts (`file_written`, `secret_refused`, `sync_done`); the context is
names, paths and short hashes, never a value.
"""

from __future__ import annotations

import os
import time
from typing import Final

import structlog

from secret_agent import __version__
from secret_agent.actions import Outcome, SyncReport
from secret_agent.model import FileState
from secret_agent.redact import scrub
from secret_agent.status_file import SecretStatus, Status, now_iso

log = structlog.get_logger("secret_agent")

_EVENTS: Final = {
    FileState.WRITTEN: ("info", "file_written"),
    FileState.MODE_FIXED: ("info", "file_mode_fixed"),
    FileState.UNCHANGED: ("debug", "file_unchanged"),
    FileState.REMOVED: ("info", "file_removed"),
    FileState.FOREIGN: ("warning", "file_kept_changed_by_someone_else"),
    FileState.LEFT: ("info", "file_left_prune_off"),
    FileState.FAILED: ("error", "file_failed"),
}


def log_report(report: SyncReport) -> None:
    """One event per target that changed or failed, one per refusal, one summary."""
    for outcome in report.outcomes:
        if outcome.state is FileState.REFUSED:
            if not outcome.secret:  # the env file: no secret's refusal carries it
                log.error("env_file_refused", path=outcome.path, error=outcome.error)
            continue  # a secret's: reported below with its reason
        level, event = _EVENTS[outcome.state]
        fields = {"path": outcome.path, "short_sha": outcome.short_sha}
        if outcome.secret:
            fields["secret"] = outcome.secret
        else:
            fields["target"] = "env_file"
        if outcome.error:
            fields["error"] = outcome.error
        getattr(log, level)(event, **fields)
        _log_backup(outcome)
    for name, why in report.failed:
        log.error("secret_fetch_failed", secret=name, error=why, files="kept as last applied")
    for refusal in report.refused:
        log.error(
            "secret_refused",
            secret=refusal.secret,
            error=refusal.reason,
            kind=type(refusal).__name__,
        )
    counts: dict[str, int] = {}
    for outcome in report.outcomes:
        counts[outcome.state.value] = counts.get(outcome.state.value, 0) + 1
    changed = report.bytes_written or any(
        o.state not in (FileState.UNCHANGED, FileState.REFUSED) for o in report.outcomes
    )
    level = "info" if changed or not report.ok else "debug"
    getattr(log, level)(
        "sync_done" if report.ok else "sync_incomplete",
        secrets=report.secrets,
        requests=report.requests,
        bytes_written=report.bytes_written,
        refusals=len(report.refused),
        fetch_failures=len(report.failed),
        **counts,
    )


_RESTORED: Final = frozenset({FileState.WRITTEN, FileState.MODE_FIXED, FileState.REMOVED})


_BACKUP_EVENTS: Final = {
    "made": ("original_kept", "a file secret-agent did not write was there; kept beside it"),
    "restored": ("original_restored", "the secret is gone; the file that was there is back"),
    "kept": ("original_left", "the target was not removed, so the original stays beside it"),
}


def _log_backup(outcome: Outcome) -> None:
    """docs/file-writing.md §6 (5): each case of `sync.existing_files` is logged."""
    if outcome.backup_action in _BACKUP_EVENTS:
        event, what = _BACKUP_EVENTS[outcome.backup_action]
        log.warning(
            event,
            path=outcome.path,
            backup=outcome.backup,
            secret=outcome.secret or None,
            what=what,
        )


def log_restore(report: SyncReport) -> None:
    """After a restore pass: one event per file put back; silence when nothing was."""
    for outcome in report.outcomes:
        _log_backup(outcome)
        if outcome.state in _RESTORED:
            log.warning(
                "file_restored",
                path=outcome.path,
                secret=outcome.secret or None,
                action=outcome.state.value,
                reason="changed or removed by someone else",
            )
        elif outcome.state is FileState.FAILED:
            log.error(
                "file_failed", path=outcome.path, secret=outcome.secret or None, error=outcome.error
            )


def daemon_status(
    report: SyncReport | None,
    *,
    phase: str,
    started_at: str,
    last_good_sync: str,
    env_file: str,
    source: tuple[str, str] = ("", ""),
    next_in: float | None = None,
    error: str = "",
    kind: str = "",
    failures: int = 0,
) -> Status:
    """The status document for the daemon's state after its last attempt."""
    return Status(
        pid=os.getpid(),
        phase=phase,
        version=__version__,
        started_at=started_at,
        last_attempt=now_iso(),
        last_good_sync=last_good_sync,
        last_error=scrub(error),
        last_error_kind=kind,
        consecutive_failures=failures,
        next_attempt=now_iso(time.time() + next_in) if next_in is not None else "",
        requests_last_pass=report.requests if report else 0,
        env_file=env_file,
        env_file_backup=_env_backup(report, env_file) if report else "",
        coder_url=source[0],
        coder_user=source[1],
        secrets=_secret_statuses(report) if report else (),
    )


def _env_backup(report: SyncReport, env_file: str) -> str:
    for o in report.outcomes:
        if not o.secret and o.path == env_file and o.backup_action != "restored":
            return o.backup
    return ""


def _secret_statuses(report: SyncReport) -> tuple[SecretStatus, ...]:
    rows: dict[str, SecretStatus] = {}
    env = dict(report.variables)
    for o in report.outcomes:
        if o.secret:
            rows[o.secret] = SecretStatus(
                name=o.secret,
                env_name=env.get(o.secret, ""),
                path=o.path,
                state=o.state.value,
                short_sha=o.short_sha,
                error=scrub(o.error),
                backup=o.backup if o.backup_action != "restored" else "",
            )
    for r in report.refused:
        rows[r.secret] = SecretStatus(
            name=r.secret, state=FileState.REFUSED.value, error=scrub(r.reason)
        )
    for name, why in report.failed:
        rows[name] = SecretStatus(
            name=name,
            path=rows[name].path if name in rows else "",
            state=FileState.FAILED.value,
            error=scrub(f"could not be fetched: {why}"),
        )
    for name, env_name in report.variables:
        rows.setdefault(name, SecretStatus(name=name, env_name=env_name, state="env"))
    return tuple(rows[k] for k in sorted(rows))
