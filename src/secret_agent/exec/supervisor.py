"""Supervisor: the one child of `exec --watch`, after consul-template's `Child`.

1. `start(env)` spawns the command with `subprocess.Popen` (argv passed through
   unchanged, never a shell) and records its pid.
2. Reaping is ours alone: on SIGCHLD, `reap()` calls `waitpid(-1, WNOHANG)` until no
   child is left to collect. That collects the supervised child (its status becomes
   `returncode`, negative for a signal, as in trio) and, when we are PID 1 in a
   container, every orphan re-parented to us, so no zombie piles up. Popen's own
   wait is never used: it would race this loop for the child's status.
3. `forward(sig)` passes a signal to the child (SIGCHLD is never forwarded).
4. `stop()` sends the stop signal, waits up to `grace` for the exit, then SIGKILLs:
   the child is dead when it returns.
5. `restart(env)` = `stop()` then `start(env)`, counted by the crash-loop guard: more
   than `max_restarts` in `restart_window` seconds and `restart_allowed()` says wait.

It knows nothing of secrets, Coder or files: argv and env come from its caller
(`child_env` says only whether execve takes them, and names the largest variables).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from secret_agent.exec.child_env import arg_max, check_exec_size, too_large

FORWARDED: Final = frozenset(
    {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
    }
)


def parse_signal(name: str) -> signal.Signals:
    """`SIGHUP`, `HUP` or `1` -> the signal; a ValueError lists the valid names."""
    text = name.strip().upper()
    if text.isdigit():
        return signal.Signals(int(text))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals[text]
    except KeyError:
        valid = ", ".join(sorted(s.name for s in FORWARDED))
        raise ValueError(f"unknown signal {name!r}; for example: {valid}") from None


class Supervisor:
    """Runs, signals, restarts and reaps one command."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        grace: float = 10.0,
        stop_signal: signal.Signals = signal.SIGTERM,
        max_restarts: int = 5,
        restart_window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` times the crash-loop guard (a test's fake clock, or the monotonic)."""
        self._argv = list(argv)
        self._clock = clock
        self._grace = grace
        self._stop_signal = stop_signal
        self._max_restarts = max_restarts
        self._window = restart_window
        self._restarts: deque[float] = deque()
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited: asyncio.Future[int] | None = None
        self.returncode: int | None = None

    def __repr__(self) -> str:  # as trio's Process: say what state it is in
        if self._proc is None:
            return "<Supervisor: not started>"
        if self.returncode is None:
            return f"<Supervisor: running with PID {self._proc.pid}>"
        if self.returncode < 0:
            return f"<Supervisor: exited with signal {-self.returncode}>"
        return f"<Supervisor: exited with status {self.returncode}>"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def command(self) -> str:
        """The program it runs (argv[0]), for messages."""
        return self._argv[0]

    @property
    def running(self) -> bool:
        """Whether a child was started and is not reaped yet (a failed start leaves the
        last one, reaped: not running)."""
        return self._proc is not None and self._proc.returncode is None

    def start(self, env: Mapping[str, str]) -> None:
        """(1) Spawn the command, once `environ.check_exec_size` says execve takes it.

        Raises:
            FileNotFoundError, PermissionError: the command cannot be run.
            ExecTooLargeError: argv and `env` are more than execve takes (an
                OSError too, E2BIG, so a caller's OSError handling covers it).
        """
        self._exited = asyncio.get_running_loop().create_future()
        self.returncode = None
        limit = arg_max()
        check_exec_size(self._argv, env, limit=limit)  # as a failed spawn: after the reset
        try:
            self._proc = subprocess.Popen(self._argv, env=dict(env))
        except OSError as exc:
            if exc.errno == errno.E2BIG:  # the kernel counted more (a #! line): same message
                raise too_large(self._argv, env, limit=limit) from None
            raise

    async def wait(self) -> int:
        """The current child's returncode, once it has exited and been reaped."""
        if self._exited is None:
            raise RuntimeError("the child was never started")
        return await asyncio.shield(self._exited)

    def reap(self) -> None:
        """(2) Collect every exited child; call on SIGCHLD (and it is safe to call anytime)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self._proc is not None and pid == self._proc.pid:
                code = os.waitstatus_to_exitcode(status)
                self._proc.returncode = code  # Popen must never wait for it again
                self.returncode = code
                if self._exited is not None and not self._exited.done():
                    self._exited.set_result(code)
            # else: an orphan re-parented to us (PID 1 in a container): reaped, nothing more

    def forward(self, sig: signal.Signals) -> None:
        """(3) Pass `sig` to the running child; nothing if it has exited."""
        if sig == signal.SIGCHLD:
            return
        if self._proc is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
                os.kill(self._proc.pid, sig)

    async def stop(self) -> int:
        """(4) Stop signal, up to `grace` seconds, then SIGKILL; returns the returncode."""
        self.forward(self._stop_signal)
        try:
            return await asyncio.wait_for(self.wait(), self._grace)
        except TimeoutError:
            self.forward(signal.SIGKILL)
            return await self.wait()

    def restart_allowed(self) -> float:
        """0 when a restart may happen now, else seconds until the guard allows one."""
        now = self._clock()
        while self._restarts and now - self._restarts[0] > self._window:
            self._restarts.popleft()
        if len(self._restarts) < self._max_restarts:
            return 0.0
        return self._window - (now - self._restarts[0])

    async def restart(
        self, env: Mapping[str, str], *, abort: Callable[[], bool] = lambda: False
    ) -> bool:
        """(5) Stop the child and start it again with `env`; False (and no new child)
        when `abort()` says, once the old one is gone, that we are stopping instead."""
        self._restarts.append(self._clock())
        await self.stop()
        if abort():
            return False
        self.start(env)
        return True
