"""The pass thread: blocking passes run off the event loop, and stop cleanly.

A pass does blocking I/O (httpx, file writes), so the daemon runs each in a thread.
`run_in_thread` uses a *daemon* thread and a future, not the default executor: a
fetch still waiting on a slow Coder must never delay the exit. What must not be cut
short is an apply, and `Gate` sees to that: a pass enters it before planning, and
`close()` waits for an apply in progress and refuses every later one (`Stopping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from secret_agent.errors import Stopping

T = TypeVar("T")


class Gate:
    """Serialises applies, and closes for good when the daemon stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> None:
        self._lock.acquire()
        if self._closed:
            self._lock.release()
            raise Stopping

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def close(self) -> None:
        """Wait for an apply in progress to end; no apply starts afterwards."""
        with self._lock:
            self._closed = True


async def run_in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a daemon thread and await its result (or exception)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name="secret-agent-pass", daemon=True).start()
    return await future
