"""`secret-agent run`: the daemon, and `run --once`.

The daemon is parts, each with one job, as siblings in one TaskGroup (the shape of
Vault Agent's run group and consul-template's runner):
- `Poller`: a pass every interval, retried with backoff; publishes good passes;
- `Watcher`: restores from memory what someone else changed; reloads the config;
- `Reporter.watchdog`: systemd's watchdog pings, from the loop itself;
- and any sibling the caller adds (`exec --watch`'s child).
They share a `Current` config, the last known good state (`LastGood`, memory only)
and the `Gate`; they talk through the `Feed` of applied passes, never to each other.

Stopping is one thing: SIGTERM/SIGINT (or `request_stop`) ends the waiting body,
which closes the gate (an apply in progress finishes, none starts), then the
TaskGroup is cancelled; a part that fails cancels it the same way. Signal handlers
only set events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import structlog

from secret_agent import __version__, exit_codes, files, logs
from secret_agent.coder import Clients
from secret_agent.config import Config
from secret_agent.daemon.feed import Current, Feed
from secret_agent.daemon.poller import Poller
from secret_agent.daemon.reporter import Reporter
from secret_agent.daemon.watcher import Watcher
from secret_agent.errors import SecretAgentError
from secret_agent.gate import Gate
from secret_agent.passes import run_pass
from secret_agent.recall import LastGood
from secret_agent.report import log_report

log = structlog.get_logger("secret_agent")

Sibling = Callable[[], Coroutine[Any, Any, None]]


def run_once(config: Config) -> int:
    """One full pass; 0 only if every secret applied, 1 if some were refused or failed.

    Raises:
        CoderError, ValueSourceError, LedgerError, CredentialsError: the pass could not
            run; nothing on disk was changed.
    """
    with Clients(config) as client:
        report = run_pass(config, client)
    log_report(report)
    return exit_codes.OK if report.ok else exit_codes.PARTIAL


def warn_in_clear(config: Config) -> None:
    """One warning at start per URL that sends a token unencrypted (README)."""
    for url in config.coder.in_clear():
        log.warning(
            "plain_http",
            url=url,
            why="the Coder token and the secret values cross the network unencrypted",
            fix="use the deployment's https:// URL",
        )


def cmd_run(config: Config, *, once: bool, load: Callable[[], Config]) -> int:
    logs.configure(level=config.log.level, fmt=config.log.format)
    warn_in_clear(config)
    if once:
        return run_once(config)
    Clients(config).close()  # fail fast on a missing URL or credentials
    asyncio.run(Daemon(config, load=load, env=os.environ).run())
    return exit_codes.OK


class Daemon:
    """The long-running `run`, or the keeper half of `exec --watch`."""

    def __init__(
        self,
        config: Config,
        *,
        load: Callable[[], Config],
        env: Mapping[str, str],
        rng: random.Random | None = None,
        memory: LastGood | None = None,
        defer_to_keeper: bool = False,
    ) -> None:
        self.current = Current(config, load)
        # The last applied state, values included: only ever in memory (README).
        self.memory = memory if memory is not None else LastGood()
        self.feed = Feed()
        # `defer_to_keeper` (exec --watch): beside a daemon that keeps this state_dir,
        # remove nothing, since exec's flags may differ from that daemon's config.
        self._defer_to_keeper = defer_to_keeper
        self._gate = Gate()
        self._reporter = Reporter(self.current, env)
        self._poller = Poller(
            self.current,
            memory=self.memory,
            gate=self._gate,
            reporter=self._reporter,
            feed=self.feed,
            rng=rng or random.Random(),  # noqa: S311 - jitter, not cryptography
        )
        self._watcher = Watcher(self.current, memory=self.memory, gate=self._gate, feed=self.feed)
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop the daemon (from the loop), as SIGTERM does."""
        self._stop.set()

    async def run(
        self,
        *,
        siblings: Sequence[Sibling] = (),
        handlers: Mapping[signal.Signals, Callable[[], None]] | None = None,
    ) -> None:
        """Run until stopped. `handlers` replace the daemon's own for their signals
        (SIGTERM and SIGINT stop, SIGHUP reloads); `siblings` run beside the parts."""
        loop = asyncio.get_running_loop()
        installed: dict[signal.Signals, Callable[[], None]] = {
            signal.SIGTERM: lambda: self._on_stop_signal(signal.SIGTERM),
            signal.SIGINT: lambda: self._on_stop_signal(signal.SIGINT),
            signal.SIGHUP: self._on_hup,
            **(handlers or {}),
        }
        for sig, handler in installed.items():
            loop.add_signal_handler(sig, handler)
        log.info(
            "daemon_started",
            version=__version__,
            pid=os.getpid(),
            interval=self.current.config.sync.interval,
        )
        self._reporter.phase("starting")
        try:
            with contextlib.ExitStack() as stack:
                self._keep_state_dir(stack)
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._poller.run())
                        tg.create_task(self._watcher.run())
                        tg.create_task(self._reporter.watchdog())
                        for sibling in siblings:
                            tg.create_task(sibling())
                        tg.create_task(self._until_stopped())
                except* _Stopped:
                    pass
                self._reporter.stopping()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            self._reporter.phase("stopped")
            self._reporter.close()
        log.info("daemon_stopped")

    async def _until_stopped(self) -> None:
        await self._stop.wait()
        await asyncio.to_thread(self._gate.close)
        raise _Stopped

    def _keep_state_dir(self, stack: contextlib.ExitStack) -> None:
        """Hold the keeper lock for the daemon's life, if no other daemon holds it."""
        where = self.current.config.sync.state_dir
        try:
            taken = stack.enter_context(files.keeper_lock(where))
        except SecretAgentError as exc:
            # The passes will report the state_dir's trouble and retry; until one can
            # tell, a daemon that defers removes nothing.
            log.warning("keeper_lock_failed", state_dir=where, error=str(exc))
            taken = not self._defer_to_keeper
            self._release(taken)
            return
        if taken:
            return
        if self._defer_to_keeper:
            self._release(False)
            log.info(
                "beside_a_daemon",
                state_dir=where,
                what="another secret-agent daemon keeps this state_dir: this one keeps"
                " its files current and removes none",
            )
        else:
            log.warning(
                "second_daemon",
                state_dir=where,
                why="another secret-agent daemon already keeps this state_dir",
                fix="stop one of them, or give each its own sync.state_dir",
            )

    def _release(self, release: bool) -> None:
        self._poller.release = release
        self._watcher.release = release

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("stopping", signal=sig.name)
        self._stop.set()

    def _on_hup(self) -> None:
        self._reporter.reloading()
        self.current.reload("SIGHUP")
        self._reporter.reloaded()


class _Stopped(Exception):  # noqa: N818 - how the body ends the group
    """Raised by the body once stopped: the TaskGroup cancels every part."""
