"""`secret-agent exec --watch -- CMD`: the container entrypoint.

The daemon's parts keep the secrets current, as `run` does, and one more sibling in
their TaskGroup, the `Child`, runs the command (as trio has it, a process is a task
whose exit is guaranteed: when the task ends, the child has been stopped and reaped):
1. The child starts once the first values are known (from a fresh daemon, Coder, or
   the last known good state with a warning) and its files are in place.
2. TERM, INT, HUP, QUIT, USR1, USR2 and WINCH go to the child (never SIGCHLD); every
   exited child is reaped, orphans included when we are PID 1.
3. After a good pass (the daemon's `Feed`) whose secrets differ from what the child
   was started with, and `--debounce` seconds without another change, plus a random
   `--splay`, it does what `--on-change` says: `restart` (stop signal, `--grace`,
   SIGKILL, start with the new environment from memory), `signal:NAME`, or `none`.
   The crash-loop guard of `Supervisor` spaces restarts out when they come too often.
4. When the child exits on its own, the daemon stops and `exec` exits with the
   child's code, or 128+N when a signal N killed it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from secret_agent import exit_codes, logs
from secret_agent.actions import SyncReport
from secret_agent.config import Config, parse_duration
from secret_agent.daemon.feed import Current, Feed
from secret_agent.daemon.run import Daemon, warn_in_clear
from secret_agent.errors import ConfigError, LaunchError, SecretAgentError
from secret_agent.exec.fast_path import ensure_files, prepare_env
from secret_agent.exec.once import command_of, values_for_exec
from secret_agent.exec.supervisor import FORWARDED, Supervisor, parse_signal
from secret_agent.model import DesiredState
from secret_agent.recall import LastGood

log = structlog.get_logger("secret_agent")
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


@dataclass(frozen=True, slots=True, kw_only=True)
class OnChange:
    """What a secret change does to the child, and when."""

    action: str  # restart | signal | none
    signal: signal.Signals | None = None
    debounce: float = 0.0
    splay: float = 0.0

    @classmethod
    def parse(cls, text: str, *, debounce: float = 0.0, splay: float = 0.0) -> OnChange:
        if text in ("restart", "none"):
            return cls(action=text, debounce=debounce, splay=splay)
        if text.startswith("signal:"):
            try:
                sig = parse_signal(text.removeprefix("signal:"))
            except ValueError as exc:
                raise ConfigError(str(exc), key="--on-change") from None
            return cls(action="signal", signal=sig, debounce=debounce, splay=splay)
        raise ConfigError(
            f"{text!r}: use restart, signal:NAME (e.g. signal:SIGHUP) or none", key="--on-change"
        )


class Child:
    """The command, as a task: `run` returns once it has exited, and the daemon is
    told to stop; cancelled, it stops the child first."""

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        current: Current,
        memory: LastGood,
        feed: Feed,
        initial: DesiredState,
        on_change: OnChange,
        stop_daemon: Callable[[], None],
    ) -> None:
        self._sup = supervisor
        self._current = current
        self._memory = memory
        self._feed = feed
        self._running = initial
        self._on_change = on_change
        self._stop_daemon = stop_daemon
        self._stop_signal: signal.Signals | None = None
        self.code = 0

    def signal_handlers(self) -> dict[signal.Signals, Callable[[], None]]:
        handlers: dict[signal.Signals, Callable[[], None]] = {
            sig: functools.partial(self._forward, sig) for sig in FORWARDED
        }
        handlers[signal.SIGCHLD] = self._sup.reap
        return handlers

    def start(self) -> None:
        """(1) First thing of `run`, with the signal handlers in place (a SIGCHLD
        before them would be lost); a command that cannot run fails exec."""
        try:
            self._sup.start(_child_env(self._current.config, self._running))
        except LaunchError:
            raise
        except OSError as exc:
            raise LaunchError.of(self._sup.command, exc) from None
        self._sup.reap()  # a child that exited before SIGCHLD was ours to handle
        log.info("child_started", pid=self._sup.pid)

    async def run(self) -> None:
        try:
            await self._supervise()
        finally:
            if self._sup.running:
                await self._sup.stop()
            self._stop_daemon()

    def _forward(self, sig: signal.Signals) -> None:
        # (2)
        if sig in STOP_SIGNALS:
            # Remembered: a stop that lands mid-restart must not be lost on the old child.
            self._stop_signal = sig
        self._sup.forward(sig)

    async def _supervise(self) -> None:
        self.start()
        seen = self._running.fingerprint()
        while True:
            changed = await self._exit_or_change(seen, timeout=None)
            if changed is None:
                return  # (4) exited on its own
            seen = changed
            # (3) debounce: wait for a quiet period; the child's exit ends it too.
            while (changed := await self._exit_or_change(seen, self._on_change.debounce)) != seen:
                if changed is None:
                    return
                seen = changed
            if self._on_change.splay > 0 and await self._exited_within(
                random.uniform(0, self._on_change.splay)  # noqa: S311 - spread only
            ):
                return
            if not await self._act():
                return

    async def _exit_or_change(self, seen: str, timeout: float | None) -> str | None:
        """None once the child has exited (its code kept); else the fingerprint of the
        secrets after the first pass that changed them from `seen`, or `seen` when
        `timeout` passes without one."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        number = self._feed.number
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            returncode, newer = await _first_of(self._sup, self._feed, number, left)
            if returncode is not None:
                self._exited(returncode)
                return None
            if newer is None:
                return seen  # quiet until the deadline
            number, report = newer
            if report.fingerprint and report.fingerprint != seen:
                return report.fingerprint

    async def _exited_within(self, seconds: float) -> bool:
        try:
            returncode = await asyncio.wait_for(self._sup.wait(), seconds)
        except TimeoutError:
            return False
        self._exited(returncode)
        return True

    def _exited(self, returncode: int) -> None:
        self.code = exit_codes.of_child(returncode)
        log.info("child_exited", returncode=returncode, exit_code=self.code)

    async def _act(self) -> bool:
        """Act on a change; False when the child is gone and exec must end."""
        if self._stop_signal is not None:
            return True  # stopping: the child is on its way out, leave it be
        desired = self._memory.state
        if desired is None or desired.fingerprint() == self._running.fingerprint():
            return True
        action = self._on_change
        log.info(
            "secrets_changed",
            action=action.action,
            signal=action.signal.name if action.signal else None,
        )
        self._running = desired
        if action.action == "signal" and action.signal is not None:
            self._sup.forward(action.signal)
        elif action.action == "restart":
            wait = self._sup.restart_allowed()
            if wait > 0:
                log.warning("restart_deferred", reason="too many restarts", retry_in=round(wait))
                if await self._exited_within(wait):
                    return False
            return await self._restart(desired)
        return True

    async def _restart(self, desired: DesiredState) -> bool:
        try:
            started = await self._sup.restart(
                _child_env(self._current.config, desired),
                abort=lambda: self._stop_signal is not None,
            )
        except OSError as exc:
            log.error("child_restart_failed", error=exc.strerror)  # noqa: TRY400
            self.code = exit_codes.launch_failure(exc)
            return False
        if not started:  # told to stop while the old child was stopping
            self.code = exit_codes.of_child(self._sup.returncode or 0)
            return False
        log.info("child_restarted", pid=self._sup.pid)
        return True


async def _first_of(
    sup: Supervisor, feed: Feed, number: int, timeout: float | None
) -> tuple[int | None, tuple[int, SyncReport] | None]:
    """Whichever comes first within `timeout`: the child's exit (its returncode) or a
    pass newer than `number` (its number and report); (None, None) when neither."""
    exited = asyncio.ensure_future(sup.wait())
    newer = asyncio.ensure_future(feed.newer_than(number))
    try:
        await asyncio.wait({exited, newer}, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        newer.cancel()
        exited.cancel()
    if exited.done() and not exited.cancelled():
        return exited.result(), None
    if newer.done() and not newer.cancelled():
        return None, newer.result()
    return None, None


def _child_env(config: Config, desired: DesiredState) -> dict[str, str]:
    """The child's environment for `desired`; each variable refused is logged."""
    child = prepare_env(config, desired, os.environ)
    for refusal in child.refused:
        log.warning(
            "variable_not_delivered",
            secret=refusal.secret,
            error=refusal.reason,
            kind=type(refusal).__name__,
        )
    return child.env


def run_watch(config: Config, args: argparse.Namespace, *, load: Callable[[], Config]) -> int:
    """The whole of `exec --watch`; returns the child's exit code."""
    argv = command_of(args)
    logs.configure(level=config.log.level, fmt=config.log.format)
    warn_in_clear(config)
    no_splay = args.splay.strip() in ("", "0", "0s", "0ms")
    on_change = OnChange.parse(
        args.on_change,
        debounce=parse_duration(args.debounce, key="--debounce"),
        splay=0.0 if no_splay else parse_duration(args.splay, key="--splay"),
    )
    grace = parse_duration(args.grace, key="--grace")
    initial = values_for_exec(args, config, err=sys.stderr)
    ensure_files(config, initial)

    async def main() -> int:
        daemon = Daemon(
            config, load=load, env=os.environ, memory=LastGood(initial), defer_to_keeper=True
        )
        child = Child(
            Supervisor(argv, grace=grace),
            current=daemon.current,
            memory=daemon.memory,
            feed=daemon.feed,
            initial=initial,
            on_change=on_change,
            stop_daemon=daemon.request_stop,
        )
        try:
            await daemon.run(siblings=[child.run], handlers=child.signal_handlers())
        except* SecretAgentError as failed:  # the command could not start: exec's own error
            raise failed.exceptions[0] from None
        return child.code

    return asyncio.run(main())
