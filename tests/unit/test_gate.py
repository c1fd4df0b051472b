"""The gate and the pass thread: an apply is never cut short, none starts after close.

Real threads; the only waits are for those threads, bounded by a timeout that a
correct gate never comes near.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from secret_agent.errors import Stopping
from secret_agent.gate import Gate, run_in_thread

BOUND = 5.0  # far beyond what any step here takes; reached only when the gate is wrong


def test_close_waits_for_the_apply_in_progress() -> None:
    gate = Gate()
    inside, finish, closed = threading.Event(), threading.Event(), threading.Event()

    def apply() -> None:
        with gate:
            inside.set()
            finish.wait(BOUND)

    def close() -> None:
        gate.close()
        closed.set()

    applier = threading.Thread(target=apply)
    applier.start()
    assert inside.wait(BOUND)
    closer = threading.Thread(target=close)
    closer.start()
    assert not closed.wait(0.2), "close returned while an apply was still writing"
    finish.set()
    assert closed.wait(BOUND), "close never returned after the apply ended"
    applier.join(BOUND)
    closer.join(BOUND)


def test_no_apply_starts_after_close() -> None:
    gate = Gate()
    with gate:
        pass  # open: an apply goes through
    gate.close()
    with pytest.raises(Stopping), gate:
        pytest.fail("an apply ran after the gate closed")
    with pytest.raises(Stopping), gate:  # and stays closed
        pytest.fail("an apply ran after the gate closed")


def test_applies_are_serialised() -> None:
    gate = Gate()
    active, most = 0, 0
    lock = threading.Lock()

    def apply() -> None:
        nonlocal active, most
        with gate:
            with lock:
                active += 1
                most = max(most, active)
            threading.Event().wait(0.01)
            with lock:
                active -= 1

    threads = [threading.Thread(target=apply) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    assert most == 1


def test_run_in_thread_returns_off_the_loop() -> None:
    async def main() -> tuple[str, str]:
        return threading.current_thread().name, await run_in_thread(
            lambda: threading.current_thread().name
        )

    loop_thread, pass_thread = asyncio.run(main())
    assert pass_thread == "secret-agent-pass"
    assert pass_thread != loop_thread


def test_run_in_thread_raises_what_the_pass_raised() -> None:
    def fails() -> None:
        raise Stopping

    async def main() -> None:
        await run_in_thread(fails)

    with pytest.raises(Stopping):
        asyncio.run(main())


def test_a_stuck_pass_does_not_hold_up_the_loop() -> None:
    """A fetch stuck on a slow Coder: the awaiting task can be cancelled at once, and
    the thread is a daemon thread, so it cannot delay the process's exit."""
    release = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(run_in_thread(lambda: release.wait(BOUND)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, BOUND)

    asyncio.run(main())
    stuck = [t for t in threading.enumerate() if t.name == "secret-agent-pass"]
    assert stuck and all(t.daemon for t in stuck)
    release.set()
