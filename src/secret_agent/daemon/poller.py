"""The poller: a pass every `sync.interval` (+/- jitter), retried with backoff.

Failures retry through tenacity with full-jitter backoff, `Retry-After` as a floor
and no attempt limit; a reload cuts the wait short. Passes run in a thread (httpx
and file I/O block; see `gate`) and enter the `Gate` before planning, so a stopping
daemon never starts an apply and never cuts one short. Each good pass goes to the
reporter and the `Feed`. Nothing on disk changes because of an error: a failed
pass leaves the last applied state.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never

from secret_agent.actions import SyncReport
from secret_agent.coder import Clients
from secret_agent.config import Config
from secret_agent.daemon.feed import Current, Feed
from secret_agent.daemon.reporter import Reporter
from secret_agent.errors import CoderError, Stopping
from secret_agent.gate import Gate, run_in_thread
from secret_agent.passes import run_pass
from secret_agent.recall import LastGood
from secret_agent.schedule import Policy, backoff_ceiling, backoff_delay, poll_delay


class PassRunner(Protocol):
    """`passes.run_pass`'s shape."""

    def __call__(
        self,
        config: Config,
        clients: Clients,
        *,
        last_good: LastGood | None = ...,
        gate: AbstractContextManager[object] = ...,
        release: bool = ...,
    ) -> SyncReport: ...


class Poller:
    """Runs passes forever; `run` returns only when the gate refuses one (stopping)."""

    def __init__(
        self,
        current: Current,
        *,
        memory: LastGood,
        gate: Gate,
        reporter: Reporter,
        feed: Feed,
        rng: random.Random,
        release: bool = True,
        run: PassRunner = run_pass,
        timer: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """`run` (a pass) and `timer` (a wait) are `run_pass` and `asyncio.sleep`, or a
        test's fakes: the retry and reload logic runs on them as it does on the real."""
        self._current = current
        self._memory = memory
        self._gate = gate
        self._reporter = reporter
        self._feed = feed
        self._rng = rng
        self._run = run
        self._timer = timer
        # False beside a daemon that keeps the state_dir: remove nothing (`run`).
        self.release = release
        self._clients: Clients | None = None
        self._wake = asyncio.Event()
        current.on_reload(self._wake.set)

    async def run(self) -> None:
        try:
            while True:
                try:
                    report = await self._until_good()
                except Stopping:
                    return
                delay = poll_delay(self._policy(), self._rng)
                self._reporter.good(report, delay)
                await self._feed.publish(report)
                await self._sleep(delay)
        finally:
            if self._clients is not None:
                self._clients.close()  # ends the agent RPC session and its reader thread

    def _policy(self) -> Policy:
        s = self._current.config.sync
        return Policy(
            interval=s.interval,
            jitter=s.jitter,
            backoff_initial=s.backoff_initial,
            backoff_max=s.backoff_max,
        )

    async def _until_good(self) -> SyncReport:
        retrying = AsyncRetrying(
            stop=stop_never,
            wait=self._retry_wait,
            sleep=self._sleep,
            # Only errors are retried: a cancellation (the group ending) must go through,
            # and tenacity's attempt would otherwise swallow it like any failure.
            retry=retry_if_exception(
                lambda exc: isinstance(exc, Exception) and not isinstance(exc, Stopping)
            ),
            before_sleep=self._after_failure,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await run_in_thread(self._pass)
        raise RuntimeError("unreachable: the poller retries forever")

    def _pass(self) -> SyncReport:
        # One holder across polls: the agent RPC's connection stays open between them,
        # and a reloaded config replaces only the clients whose settings changed.
        config = self._current.config
        clients = self._clients
        self._clients = Clients(config) if clients is None else clients.renewed(config)
        return self._run(
            config, self._clients, last_good=self._memory, gate=self._gate, release=self.release
        )

    def _retry_wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff_delay(
            self._policy(),
            state.attempt_number,
            retryable=isinstance(exc, CoderError) and exc.retryable,
            retry_after=getattr(exc, "retry_after", None),
            rng=self._rng,
        )

    def _after_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self._reporter.failed(
            exc,
            attempt=state.attempt_number,
            retry_in=state.next_action.sleep if state.next_action else 0.0,
            ceiling=backoff_ceiling(self._policy(), state.attempt_number),
        )

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less after a reload (a new token, SIGHUP)."""
        woken = asyncio.ensure_future(self._wake.wait())
        timer = asyncio.ensure_future(self._timer(seconds))
        try:
            await asyncio.wait({woken, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            timer.cancel()
        self._wake.clear()
