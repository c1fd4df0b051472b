"""The daemon's shared state: the config in force, and the feed of applied passes.

Parts never call each other: the poller publishes each good pass to the `Feed`, and
whoever cares (the watcher, for the targets to watch; `exec --watch`'s child, for
the secrets it was started with) waits for a newer one. A reload is a new config in
`Current`, which tells the parts that listen for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from secret_agent import logs
from secret_agent.actions import SyncReport
from secret_agent.config import Config
from secret_agent.errors import SecretAgentError

log = structlog.get_logger("secret_agent")


class Feed:
    """The latest good pass, numbered; waiters see every change, and only the latest."""

    def __init__(self) -> None:
        self._report: SyncReport | None = None
        self._number = 0
        self._changed = asyncio.Condition()

    @property
    def number(self) -> int:
        return self._number

    @property
    def latest(self) -> SyncReport | None:
        return self._report

    async def publish(self, report: SyncReport) -> None:
        async with self._changed:
            self._report = report
            self._number += 1
            self._changed.notify_all()

    async def newer_than(self, number: int) -> tuple[int, SyncReport]:
        """Wait for a pass after `number`; return its number and report."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._number > number)
            if self._report is None:  # published before numbered: cannot happen
                raise AssertionError("a numbered pass with no report")
            return self._number, self._report


class Current:
    """The config in force, replaced by `reload`, which then calls each listener."""

    def __init__(self, config: Config, load: Callable[[], Config]) -> None:
        self.config = config
        self._load = load
        self._listeners: list[Callable[[], None]] = []

    def on_reload(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def reload(self, reason: str) -> bool:
        """Load the config again; a bad one is logged and the old one kept."""
        try:
            config = self._load()
        except SecretAgentError as exc:
            log.error("config_reload_failed", reason=reason, error=str(exc))  # noqa: TRY400 - the message says it all
            return False
        self.config = config
        logs.configure(level=config.log.level, fmt=config.log.format)
        log.info("config_reloaded", reason=reason)
        for listener in self._listeners:
            listener()
        return True
