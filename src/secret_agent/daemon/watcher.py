"""The watcher: put back what someone else changed, and follow config edits.

watchfiles watches the directories of what the last good pass delivered, and of the
config and token files. A target changed or removed by someone else is restored
from the last known good state, which only memory holds (no network), one restore
at a time; a changed config or token file is reloaded. The set watched follows the
`Feed` (each good pass) and reloads (the files may have moved).
"""

from __future__ import annotations

import asyncio

import structlog

from secret_agent.actions import SyncReport
from secret_agent.converge import restore_pass
from secret_agent.daemon.feed import Current, Feed
from secret_agent.errors import Stopping
from secret_agent.gate import Gate, run_in_thread
from secret_agent.model import FileState
from secret_agent.recall import LastGood
from secret_agent.report import log_restore
from secret_agent.watch import Reaction, WatchSet, classify, watch_set

log = structlog.get_logger("secret_agent")

# A change made before new watches are in place raises no event: look once they are
# up (inotify setup takes milliseconds).
RESTORE_CHECK_DELAY = 0.25
_DELIVERED_GONE = (FileState.REMOVED, FileState.FOREIGN, FileState.LEFT)


class Watcher:
    """Watches, restores and reloads; `run` runs until cancelled."""

    def __init__(
        self,
        current: Current,
        *,
        memory: LastGood,
        gate: Gate,
        feed: Feed,
        release: bool = True,
    ) -> None:
        self._current = current
        self._memory = memory
        self._gate = gate
        self._feed = feed
        self.release = release
        self._targets: frozenset[str] = frozenset()
        self._rewatch = asyncio.Event()
        self._restore_wanted = asyncio.Event()
        self._closed = False
        current.on_reload(self._rewatch.set)

    def close(self) -> None:
        """Let go of the watches for good: watchfiles' thread cannot be interrupted
        mid-wait, only told to stop (its stop event)."""
        self._closed = True
        self._rewatch.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._follow())
            tg.create_task(self._restore_loop())
            tg.create_task(self._watch_loop())

    async def _follow(self) -> None:
        seen = self._feed.number
        try:
            while True:
                seen, report = await self._feed.newer_than(seen)
                targets = _delivered(report)
                if targets != self._targets:
                    self._targets = targets
                    self._rewatch.set()
        finally:
            # Cancelled (stopping, or a sibling failed): this task hears it at once,
            # and watchfiles' thread, which cannot be interrupted mid-wait, only
            # through its stop event. Without this the group would wait on it.
            self.close()

    def _watch_set(self) -> WatchSet:
        config = self._current.config
        targets = set(self._targets)
        if config.env_file.path:
            targets.add(config.env_file.path)
        return watch_set(targets, [config.source_file, config.coder.token_file])

    async def _watch_loop(self) -> None:
        from watchfiles import awatch  # the daemon only: `run --once` never pays for it

        loop = asyncio.get_running_loop()
        previous: WatchSet | None = None
        while not self._closed:
            self._rewatch.clear()
            watched = self._watch_set()
            if watched != previous:
                log.debug("watching", dirs=watched.dirs)
                loop.call_later(RESTORE_CHECK_DELAY, self.want_restore)
                previous = watched
            if not watched.dirs:
                await self._rewatch.wait()
                continue
            # The loop ends when `_rewatch` is set (a new set to watch, or close).
            async for changes in awatch(
                *watched.dirs,
                watch_filter=None,
                recursive=False,
                debounce=400,
                step=30,
                stop_event=self._rewatch,
            ):
                reaction = classify(changes, watched)
                if Reaction.RELOAD in reaction:
                    self._current.reload("config or token file changed")
                if Reaction.REWATCH in reaction:
                    self._rewatch.set()
                if Reaction.RESTORE in reaction:
                    self.want_restore()

    def want_restore(self) -> None:
        """Ask for a restore. Requests coalesce: however many arrive while one runs,
        one more follows it, which sees every change made before it began."""
        self._restore_wanted.set()

    async def _restore_loop(self) -> None:
        while True:
            await self._restore_wanted.wait()
            self._restore_wanted.clear()
            if await self.restore():
                # A restore may have recreated a directory: watches on the old inode
                # see nothing, so rebuild them.
                self._rewatch.set()

    async def restore(self) -> bool:
        """One restore from memory; True if it wrote anything."""
        config = self._current.config
        try:
            report = await run_in_thread(
                lambda: restore_pass(
                    config, lambda: self._memory.state, gate=self._gate, release=self.release
                )
            )
        except Stopping:
            return False
        except Exception as exc:  # noqa: BLE001 - a failed restore must not end the daemon
            log.error("restore_failed", error=str(exc), kind=type(exc).__name__)  # noqa: TRY400 - expected; no traceback
            return False
        if report is None:
            return False
        log_restore(report)
        return any(o.state is FileState.WRITTEN for o in report.outcomes)


def _delivered(report: SyncReport) -> frozenset[str]:
    return frozenset(o.path for o in report.outcomes if o.state not in _DELIVERED_GONE)
