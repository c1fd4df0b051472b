"""The crash-loop guard of `exec --watch`, on a fake clock and real children.

More than `max_restarts` restarts within `restart_window` seconds and the guard says
how long to wait; as the oldest restart leaves the window, restarts are allowed again.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from secret_agent.exec.supervisor import Supervisor


def supervised(sup: Supervisor) -> None:
    """Reap on SIGCHLD, as `exec --watch` does: the supervisor never waits by itself."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, sup.reap)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def restarts(sup: Supervisor, clock: Clock, times: list[float]) -> None:
    async def main() -> None:
        supervised(sup)
        sup.start(dict(os.environ))
        for t in times:
            clock.now = t
            assert await sup.restart(dict(os.environ))
        await sup.stop()

    asyncio.run(main())


def test_the_guard_waits_out_the_window() -> None:
    clock = Clock()
    sup = Supervisor(["sleep", "30"], grace=5, max_restarts=3, restart_window=60, clock=clock)
    assert sup.restart_allowed() == 0.0
    restarts(sup, clock, [1000.0, 1010.0, 1020.0])

    clock.now = 1030.0
    assert sup.restart_allowed() == pytest.approx(30.0)  # the first leaves at 1060
    clock.now = 1059.0
    assert sup.restart_allowed() == pytest.approx(1.0)
    clock.now = 1060.5
    assert sup.restart_allowed() == 0.0  # one slot is free again


def test_restarts_spread_wider_than_the_window_are_never_held() -> None:
    clock = Clock()
    sup = Supervisor(["sleep", "30"], grace=5, max_restarts=2, restart_window=10, clock=clock)
    times = [1000.0 + 11 * n for n in range(5)]

    async def main() -> list[float]:
        supervised(sup)
        sup.start(dict(os.environ))
        waits = []
        for t in times:
            clock.now = t
            waits.append(sup.restart_allowed())
            await sup.restart(dict(os.environ))
        await sup.stop()
        return waits

    assert asyncio.run(main()) == [0.0] * 5


def test_each_restart_replaces_the_child() -> None:
    clock = Clock()
    sup = Supervisor(["sleep", "30"], grace=5, clock=clock)

    async def main() -> list[int | None]:
        supervised(sup)
        sup.start(dict(os.environ))
        pids = [sup.pid]
        for _ in range(2):
            await sup.restart(dict(os.environ))
            pids.append(sup.pid)
        await sup.stop()
        return pids

    pids = asyncio.run(main())
    assert len(set(pids)) == 3
    assert not sup.running
