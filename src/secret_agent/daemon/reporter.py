"""What the daemon tells the world: logs, the status file, systemd (notify, watchdog).

One object, so the status file, `STATUS=` and the logs always tell the same story:
the poller calls `good` or `failed` after each attempt, `run` calls `phase` at the
edges of the daemon's life. Failures to report are logged, never raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from secret_agent import notify
from secret_agent.actions import SyncReport
from secret_agent.daemon.feed import Current
from secret_agent.errors import SecretAgentError, UnauthorizedError
from secret_agent.report import daemon_status, log_report
from secret_agent.status_file import now_iso, source_of, write_status

log = structlog.get_logger("secret_agent")


class Reporter:
    """Logs, the status file and systemd, for one daemon."""

    def __init__(self, current: Current, env: Mapping[str, str]) -> None:
        self._current = current
        self._notifier = notify.Notifier(env)
        self._started = now_iso()
        self._last_good = ""
        self._last_report: SyncReport | None = None
        self._ready = False

    def phase(self, phase: str) -> None:
        """starting | stopped: the daemon's own edges."""
        self._write(phase)

    def good(self, report: SyncReport, next_in: float) -> None:
        log_report(report)
        self._last_good = now_iso()
        self._last_report = report
        self._write("synced", next_in=next_in)
        self._notifier.status(
            f"synced {report.secrets} secrets at {self._last_good}; next poll in {next_in:.0f}s"
        )
        if not self._ready:
            self._ready = True
            self._notifier.send(notify.READY)

    def failed(
        self, exc: BaseException | None, *, attempt: int, retry_in: float, ceiling: float
    ) -> None:
        kind = type(exc).__name__
        event = "coder_unauthorized" if isinstance(exc, UnauthorizedError) else "sync_failed"
        log.error(
            event,
            error=str(exc),
            kind=kind,
            attempt=attempt,
            retry_in=round(retry_in, 3),
            backoff_ceiling=ceiling,
            files="kept as last applied",
        )
        self._write("retrying", next_in=retry_in, error=str(exc), kind=kind, failures=attempt)
        self._notifier.status(
            f"{kind} (attempt {attempt}); retrying in {retry_in:.1f}s; files kept as last applied"
        )

    def reloading(self) -> None:
        self._notifier.send(notify.RELOADING)

    def reloaded(self) -> None:
        if self._ready:
            self._notifier.send(notify.READY)

    def stopping(self) -> None:
        # Only once no pass can report any more: systemd must hear STOPPING=1 last.
        self._notifier.send(notify.STOPPING)

    def close(self) -> None:
        self._notifier.close()

    async def watchdog(self) -> None:
        """`WATCHDOG=1` at half of `WATCHDOG_USEC`, from the loop itself: a wedged loop
        stops the pings, and systemd restarts the daemon."""
        interval = self._notifier.watchdog_interval
        if not interval:
            return
        while True:
            self._notifier.send(notify.WATCHDOG)
            await asyncio.sleep(interval)

    def _write(
        self,
        phase: str,
        *,
        next_in: float | None = None,
        error: str = "",
        kind: str = "",
        failures: int = 0,
    ) -> None:
        config = self._current.config
        coder = config.coder
        status = daemon_status(
            self._last_report,
            phase=phase,
            started_at=self._started,
            last_good_sync=self._last_good,
            env_file=config.env_file.path,
            source=source_of(coder.url, coder.agent_url, coder.user),
            next_in=next_in,
            error=error,
            kind=kind,
            failures=failures,
        )
        try:
            write_status(config.sync.state_dir, status)
        except (SecretAgentError, OSError) as exc:
            log.warning("status_write_failed", error=str(exc))
