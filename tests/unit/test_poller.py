"""The poller's retry, backoff and reload logic, on a fake pass and a fake clock.

The e2e daemon tests see the same behaviour through wall-clock runs against real
servers; here each wait is recorded instead of slept, so the numbers can be checked
exactly and the test takes milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from secret_agent.actions import SyncReport
from secret_agent.config import Config, load_config
from secret_agent.daemon.feed import Current, Feed
from secret_agent.daemon.poller import Poller
from secret_agent.daemon.reporter import Reporter
from secret_agent.errors import (
    CoderAPIError,
    CoderUnreachableError,
    RateLimitedError,
    ServerError,
    Stopping,
)
from secret_agent.gate import Gate
from secret_agent.recall import LastGood

INTERVAL = 30.0
BACKOFF_INITIAL = 2.0
BACKOFF_MAX = 40.0


def make_config(tmp_path: Path) -> Config:
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        "[sync]\n"
        f'state_dir = "{tmp_path / "state"}"\n'
        f'interval = "{INTERVAL:g}s"\njitter = 0.0\n'
        f'backoff_initial = "{BACKOFF_INITIAL:g}s"\nbackoff_max = "{BACKOFF_MAX:g}s"\n'
        '[env_file]\npath = ""\n'
    )
    env = {"HOME": str(tmp_path), "CODER_URL": "http://c.example", "CODER_SESSION_TOKEN": "t"}
    return load_config(path=str(config_file), env=env)


class Script:
    """A fake `run_pass`: each call takes the next outcome (an exception is raised),
    and the calls after the last raise `Stopping`, which ends `Poller.run`."""

    def __init__(self, *outcomes: SyncReport | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self, config: Config, clients: object, **_: object) -> SyncReport:
        self.calls += 1
        if not self.outcomes:
            raise Stopping
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class Clock:
    """A fake timer: records each wait and returns at once (or never, when `hold`)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.waits: list[float] = []
        self.hold = hold

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.hold:
            await asyncio.Event().wait()


def poller(
    tmp_path: Path,
    script: Callable[..., SyncReport],
    clock: Callable[[float], Awaitable[None]],
    *,
    load: Callable[[], Config] | None = None,
) -> tuple[Poller, Current, Feed]:
    config = make_config(tmp_path)
    current = Current(config, load or (lambda: config))
    feed = Feed()
    made = Poller(
        current,
        memory=LastGood(None),
        gate=Gate(),
        reporter=Reporter(current, env={}),
        feed=feed,
        rng=random.Random(7),
        run=script,
        timer=clock,
    )
    return made, current, feed


def status(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp_path / "state" / "status.json").read_text())
    return doc


def test_failures_back_off_within_the_doubling_ceiling_then_polls_at_the_interval(
    tmp_path: Path,
) -> None:
    """Each failed pass waits within [initial/2, initial * 2^(n-1)] capped at backoff_max;
    the first good pass is published and the next poll is the interval (no jitter)."""
    failures = [CoderUnreachableError("connect refused")] * 6
    script = Script(*failures, SyncReport(secrets=2, fingerprint="f1"))
    clock = Clock()
    made, _, feed = poller(tmp_path, script, clock)
    asyncio.run(made.run())

    backoffs, poll = clock.waits[:-1], clock.waits[-1]
    assert len(backoffs) == 6
    for n, wait in enumerate(backoffs, start=1):
        ceiling = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (n - 1))
        assert BACKOFF_INITIAL / 2 <= wait <= ceiling, (n, wait)
    assert backoffs[-1] > BACKOFF_INITIAL * 2  # it did grow, at the seed chosen
    assert poll == INTERVAL
    assert feed.number == 1
    assert feed.latest is not None and feed.latest.fingerprint == "f1"
    assert script.calls == 8  # six failures, the good pass, the Stopping that ended it
    doc = status(tmp_path)
    assert doc["phase"] == "synced"
    assert doc["consecutive_failures"] == 0


def test_retry_after_is_a_floor_and_a_refusal_waits_the_cap(tmp_path: Path) -> None:
    """A 429's Retry-After is waited at least; an answer waiting cannot fix (400) waits
    backoff_max rather than hammering Coder; 5xx backs off like an outage."""
    script = Script(
        RateLimitedError(status=429, message="slow down", retry_after=25.0),
        CoderAPIError(status=400, message="bad request"),
        ServerError(status=503, message="unavailable"),
        SyncReport(),
    )
    clock = Clock()
    made, _, _ = poller(tmp_path, script, clock)
    asyncio.run(made.run())

    assert clock.waits[0] >= 25.0
    assert clock.waits[1] == BACKOFF_MAX
    assert BACKOFF_INITIAL / 2 <= clock.waits[2] <= BACKOFF_INITIAL * 4


def test_the_status_file_counts_failures_while_retrying(tmp_path: Path) -> None:
    """After two failures and before any success, the status says retrying, 2 in a row,
    with the error's kind."""
    seen: list[dict[str, Any]] = []
    script = Script(
        ServerError(status=502, message="bad gateway"),
        ServerError(status=502, message="bad gateway"),
    )
    clock = Clock()

    async def timer(seconds: float) -> None:
        await clock(seconds)
        seen.append(status(tmp_path))

    made, _, _ = poller(tmp_path, script, timer)  # reads the status at each wait
    asyncio.run(made.run())

    assert [d["consecutive_failures"] for d in seen] == [1, 2]
    assert all(d["phase"] == "retrying" for d in seen)
    assert seen[-1]["last_error_kind"] == "ServerError"


def test_a_reload_cuts_a_wait_short(tmp_path: Path) -> None:
    """A wait that would last the whole interval ends as soon as the config is reloaded
    (SIGHUP, a new token), and the next pass runs on the new config."""
    script = Script(SyncReport(fingerprint="a"), SyncReport(fingerprint="b"))
    clock = Clock(hold=True)
    configs: list[Config] = []

    def recording(config: Config, clients: object, **kw: object) -> SyncReport:
        configs.append(config)
        return script(config, clients, **kw)

    reloaded = make_config(tmp_path)
    loads = iter([reloaded])
    made, current, feed = poller(tmp_path, recording, clock, load=lambda: next(loads))

    async def main() -> None:
        task = asyncio.create_task(made.run())
        await feed.newer_than(0)
        await asyncio.sleep(0)  # the poller is now in its interval wait, which never ends
        assert current.reload("test")
        await asyncio.wait_for(feed.newer_than(1), timeout=5)
        task.cancel()  # its next wait never ends either
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert feed.number == 2
    assert configs[0] is not reloaded
    assert configs[1] is reloaded


def test_a_cancelled_poller_is_not_retried(tmp_path: Path) -> None:
    """Cancellation (the group ending) goes through the retry loop, not into it."""
    clock = Clock(hold=True)
    script = Script(ServerError(status=500, message="x"))
    made, _, _ = poller(tmp_path, script, clock)

    async def main() -> None:
        task = asyncio.create_task(made.run())
        while not clock.waits:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert script.calls == 1
