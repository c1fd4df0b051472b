"""`secret-agent exec --watch -- CMD`: the container entrypoint.

The daemon keeps the secrets current, as `run` does, and this companion supervises
the one command:
1. The child starts once the first values are known (from a fresh daemon, Coder, or
   the last known good state with a warning) and its files are in place.
2. TERM, INT, HUP, QUIT, USR1, USR2 and WINCH go to the child (never SIGCHLD); every
   exited child is reaped, orphans included when we are PID 1.
3. After a good pass whose secrets differ from what the child was started with, and
   `--debounce` seconds without another change, plus a random `--splay`, it does
   what `--on-change` says: `restart` (stop signal, `--grace`, SIGKILL, start with the
   new environment), `signal:NAME`, or `none`. The crash-loop guard of `Supervisor`
   spaces restarts out when they come too often.
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
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from secret_agent import logs
from secret_agent.actions import SyncReport
from secret_agent.config import Config, parse_duration
from secret_agent.daemon import Daemon, warn_in_clear
from secret_agent.errors import ConfigError, LaunchError
from secret_agent.exec.fast_path import ensure_files, prepare_env
from secret_agent.exec.once import command_of, values_for_exec
from secret_agent.exec.supervisor import FORWARDED, Supervisor, exit_code, parse_signal
from secret_agent.model import DesiredState
from secret_agent.recall import LastGood

log = structlog.get_logger("secret_agent")
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


@dataclass(frozen=True, slots=True, kw_only=True)
class OnChange:
    """What a secret change does to the child."""

    action: str  # restart | signal | none
    signal: signal.Signals | None = None

    @classmethod
    def parse(cls, text: str) -> OnChange:
        if text in ("restart", "none"):
            return cls(action=text)
        if text.startswith("signal:"):
            try:
                return cls(action="signal", signal=parse_signal(text.removeprefix("signal:")))
            except ValueError as exc:
                raise ConfigError(str(exc), key="--on-change") from None
        raise ConfigError(
            f"{text!r}: use restart, signal:NAME (e.g. signal:SIGHUP) or none", key="--on-change"
        )


class ChildCompanion:
    """Supervises the command for the daemon (the `Companion` protocol)."""

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        config: Callable[[], Config],
        last_good: Callable[[], LastGood],
        initial: DesiredState,
        on_change: OnChange,
        debounce: float,
        splay: float,
        stop_daemon: Callable[[], None],
    ) -> None:
        self._sup = supervisor
        self._config = config
        self._last_good = last_good
        self._initial = initial
        self._on_change = on_change
        self._debounce = debounce
        self._splay = splay
        self._stop_daemon = stop_daemon
        self._running_fingerprint = initial.fingerprint()
        self._changed = asyncio.Event()
        self._restarting = False
        self._restarted = asyncio.Event()
        self._stop_signal: signal.Signals | None = None
        self._code = 0

    def _env(self, desired: DesiredState) -> dict[str, str]:
        child = prepare_env(self._config(), desired, os.environ)
        for refusal in child.refused:
            log.warning(
                "variable_not_delivered",
                secret=refusal.secret,
                error=refusal.reason,
                kind=type(refusal).__name__,
            )
        return child.env

    def signal_handlers(self) -> Mapping[signal.Signals, Callable[[], None]]:
        handlers: dict[signal.Signals, Callable[[], None]] = {
            sig: functools.partial(self._forward, sig) for sig in FORWARDED
        }
        handlers[signal.SIGCHLD] = self._sup.reap
        return handlers

    def _forward(self, sig: signal.Signals) -> None:
        if sig in STOP_SIGNALS:
            # Remembered: a stop that lands mid-restart must not be lost on the old child.
            self._stop_signal = sig
        self._sup.forward(sig)

    async def start(self) -> None:
        # (1)
        try:
            self._sup.start(self._env(self._initial))
        except FileNotFoundError:
            raise LaunchError("command not found", exit_code=127) from None
        except PermissionError:
            raise LaunchError("permission denied", exit_code=126) from None
        self._sup.reap()  # a child that exited before SIGCHLD was ours to handle
        log.info("child_started", pid=self._sup.pid)

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._child_watch(), self._change_loop()]

    def on_good_pass(self, report: SyncReport) -> None:
        if report.fingerprint and report.fingerprint != self._running_fingerprint:
            self._changed.set()

    def exit_code(self) -> int:
        return self._code

    async def _child_watch(self) -> None:
        # (4)
        while True:
            returncode = await self._sup.wait()
            if self._restarting:
                await self._restarted.wait()
                continue
            self._code = exit_code(returncode)
            log.info("child_exited", returncode=returncode, exit_code=self._code)
            self._stop_daemon()
            return

    async def _change_loop(self) -> None:
        # (3)
        while True:
            await self._changed.wait()
            while True:  # debounce: wait for a quiet period
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), self._debounce)
                except TimeoutError:
                    break
            if self._splay > 0:
                await asyncio.sleep(random.uniform(0, self._splay))  # noqa: S311 - spread only
            await self._act()

    async def _act(self) -> None:
        if self._stop_signal is not None:
            return  # stopping: the child is on its way out, leave it be
        desired = self._last_good().state
        if desired is None or desired.fingerprint() == self._running_fingerprint:
            return
        action = self._on_change
        log.info(
            "secrets_changed",
            action=action.action,
            signal=action.signal.name if action.signal else None,
        )
        if action.action == "signal" and action.signal is not None:
            self._sup.forward(action.signal)
        elif action.action == "restart":
            wait = self._sup.restart_allowed()
            if wait > 0:
                log.warning("restart_deferred", reason="too many restarts", retry_in=round(wait))
                await asyncio.sleep(wait)
            await self._restart(desired)
        self._running_fingerprint = desired.fingerprint()

    async def _restart(self, desired: DesiredState) -> None:
        self._restarting = True
        self._restarted.clear()
        try:
            started = await self._sup.restart(
                self._env(desired), abort=lambda: self._stop_signal is not None
            )
            if not started:  # told to stop while the old child was stopping
                self._code = exit_code(self._sup.returncode or 0)
                self._stop_daemon()
                return
            log.info("child_restarted", pid=self._sup.pid)
        except OSError as exc:
            log.error("child_restart_failed", error=exc.strerror)  # noqa: TRY400
            self._code = 127 if isinstance(exc, FileNotFoundError) else 126
            self._stop_daemon()
        finally:
            self._restarting = False
            self._restarted.set()


def run_watch(config: Config, args: argparse.Namespace, *, load: Callable[[], Config]) -> int:
    """The whole of `exec --watch`; returns the child's exit code."""
    argv = command_of(args)
    logs.configure(level=config.log.level, fmt=config.log.format)
    warn_in_clear(config)
    on_change = OnChange.parse(args.on_change)
    grace = parse_duration(args.grace, key="--grace")
    debounce = parse_duration(args.debounce, key="--debounce")
    no_splay = args.splay.strip() in ("", "0", "0s", "0ms")
    splay = 0.0 if no_splay else parse_duration(args.splay, key="--splay")
    initial = values_for_exec(args, config, err=sys.stderr)
    ensure_files(config, initial)
    supervisor = Supervisor(argv, grace=grace)

    async def main() -> int:
        daemon: Daemon
        companion = ChildCompanion(
            supervisor,
            config=lambda: daemon.config,
            last_good=lambda: daemon.last_good,
            initial=initial,
            on_change=on_change,
            debounce=debounce,
            splay=splay,
            stop_daemon=lambda: daemon.request_stop(),  # noqa: PLW0108 - daemon is bound below
        )
        daemon = Daemon(
            config,
            load=load,
            env=os.environ,
            companion=companion,
            last_good=LastGood(initial),
            defer_to_keeper=True,
        )
        return await daemon.run()

    return asyncio.run(main())
