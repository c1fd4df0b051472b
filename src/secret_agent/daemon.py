"""`secret-agent run`: the daemon, and `run --once`.

One asyncio program with these tasks in one TaskGroup:
- the poller: a pass every `interval` +/- jitter; failures retry through tenacity
  with full-jitter backoff, `Retry-After` as a floor, and no attempt limit;
- the watcher: watchfiles on the directories of what we deliver and of the config
  and token files; a target changed or removed by someone else is restored from the
  last known good state, which only memory holds (no network), and a changed config
  or token file is reloaded;
- the restorer: runs those restores one at a time;
- the watchdog: `WATCHDOG=1` at half of `WATCHDOG_USEC`, from the loop itself, so a
  wedged loop stops the pings;
- a companion's tasks (`exec --watch`'s child, see `exec.watch`);
- the main body: waits for SIGTERM/SIGINT, then stops cleanly.

Passes run in a worker thread (httpx and file I/O block; see `gate`). A pass enters
the `Gate` before planning: once stopping, no new apply starts, and stopping waits
for an apply in progress, so SIGTERM never leaves a half-done write. A fetch in
flight is simply abandoned (it has touched nothing).

Signal handlers only set events; the work happens in the tasks. Nothing on disk is
ever changed because of an error: a failed pass leaves the last applied state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never

from secret_agent import __version__, files, logs, notify
from secret_agent.actions import SyncReport
from secret_agent.config import Config
from secret_agent.converge import restore_pass
from secret_agent.errors import CoderError, SecretAgentError, UnauthorizedError
from secret_agent.gate import Gate, Stopping, run_in_thread
from secret_agent.model import FileState
from secret_agent.passes import Clients, make_client, run_pass
from secret_agent.recall import LastGood
from secret_agent.report import daemon_status, log_report, log_restore
from secret_agent.schedule import Policy, backoff_ceiling, backoff_delay, poll_delay
from secret_agent.status_file import now_iso, source_of, write_status
from secret_agent.watch import Reaction, WatchSet, classify, watch_set

log = structlog.get_logger("secret_agent")

EXIT_OK = 0
EXIT_PARTIAL = 1
RESTORE_CHECK_DELAY = 0.25


def run_once(config: Config) -> int:
    """One full pass; 0 only if every secret applied, 1 if some were refused or failed.

    Raises:
        CoderError, ValueSourceError, LedgerError, CredentialsError: the pass could not
            run; nothing on disk was changed.
    """
    with make_client(config) as client:
        report = run_pass(config, client)
    log_report(report)
    return EXIT_OK if report.ok else EXIT_PARTIAL


def warn_in_clear(config: Config) -> None:
    """One warning at start per URL that sends a token unencrypted (product.md)."""
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
    make_client(config).close()  # fail fast on a missing URL or credentials
    return asyncio.run(Daemon(config, load=load, env=os.environ).run())


class Companion(Protocol):
    """What rides along with the daemon: `exec --watch`'s child (see `exec.watch`)."""

    def signal_handlers(self) -> Mapping[signal.Signals, Callable[[], None]]:
        """Handlers that replace the daemon's own for these signals."""
        ...

    async def start(self) -> None:
        """Called once, before the daemon's tasks start."""
        ...

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        """Coroutines to run in the daemon's TaskGroup until it stops."""
        ...

    def on_good_pass(self, report: SyncReport) -> None:
        """After every good pass."""
        ...

    def exit_code(self) -> int:
        """The daemon's exit code once it has stopped."""
        ...


class Daemon:
    """The long-running `run`; `run()` returns the exit code."""

    def __init__(
        self,
        config: Config,
        *,
        load: Callable[[], Config],
        env: Mapping[str, str],
        rng: random.Random | None = None,
        companion: Companion | None = None,
        last_good: LastGood | None = None,
        defer_to_keeper: bool = False,
    ) -> None:
        self._companion = companion
        # `defer_to_keeper` (exec --watch): beside a daemon that keeps this state_dir,
        # remove nothing, since exec's flags may differ from that daemon's config.
        self._defer_to_keeper = defer_to_keeper
        self._release = True
        # The last applied state, values included: only ever in memory (product.md).
        self._memory = last_good if last_good is not None else LastGood()
        self._config = config
        self._load = load
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._notifier = notify.Notifier(env)
        self._gate = Gate()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._watch_stop = asyncio.Event()
        self._restore_wanted = asyncio.Event()
        self._clients: Clients | None = None
        self._ready = False
        self._started = now_iso()
        self._last_good = ""
        self._last_report: SyncReport | None = None
        self._targets: frozenset[str] = frozenset()

    # -- lifetime ------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @property
    def last_good(self) -> LastGood:
        """The last known good state (set by each good pass, under the state lock)."""
        return self._memory

    def request_stop(self) -> None:
        """Stop the daemon (from the loop): as SIGTERM does without a companion."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        handlers: dict[signal.Signals, Callable[[], None]] = {
            signal.SIGTERM: lambda: self._on_stop_signal(signal.SIGTERM),
            signal.SIGINT: lambda: self._on_stop_signal(signal.SIGINT),
            signal.SIGHUP: self._on_hup,
        }
        if self._companion is not None:
            handlers.update(self._companion.signal_handlers())
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        stack = contextlib.ExitStack()
        log.info(
            "daemon_started",
            version=__version__,
            pid=os.getpid(),
            interval=self._config.sync.interval,
        )
        self._write_status("starting")
        try:
            self._keep_state_dir(stack)
            if self._companion is not None:
                await self._companion.start()
            async with asyncio.TaskGroup() as tg:
                extra = self._companion.tasks() if self._companion is not None else []
                tasks = [
                    tg.create_task(self._poll_loop()),
                    tg.create_task(self._watch_loop()),
                    tg.create_task(self._restore_loop()),
                    tg.create_task(self._watchdog_loop()),
                    *(tg.create_task(coro) for coro in extra),
                ]
                await self._stop.wait()
                self._watch_stop.set()
                await asyncio.to_thread(self._gate.close)
                for task in tasks:
                    task.cancel()
                # Only now: a pass that ended while the gate closed may still have sent
                # STATUS=, and systemd must hear STOPPING=1 last.
                self._notifier.send(notify.STOPPING)
        finally:
            stack.close()
            for sig in handlers:
                loop.remove_signal_handler(sig)
            if self._clients is not None:
                self._clients.close()  # ends the agent RPC session and its reader thread
            self._write_status("stopped")
            self._notifier.close()
        log.info("daemon_stopped")
        return self._companion.exit_code() if self._companion is not None else EXIT_OK

    def _keep_state_dir(self, stack: contextlib.ExitStack) -> None:
        """Hold the keeper lock for the daemon's life, if no other daemon holds it."""
        where = self._config.sync.state_dir
        try:
            taken = stack.enter_context(files.keeper_lock(where))
        except SecretAgentError as exc:
            # The passes will report the state_dir's trouble and retry; until one can
            # tell, a daemon that defers removes nothing.
            log.warning("keeper_lock_failed", state_dir=where, error=str(exc))
            self._release = not self._defer_to_keeper
            return
        if taken:
            return
        if self._defer_to_keeper:
            self._release = False
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

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("stopping", signal=sig.name)
        self._stop.set()
        self._wake.set()

    def _on_hup(self) -> None:
        self._notifier.send(notify.RELOADING)
        self._reload("SIGHUP")
        if self._ready:
            self._notifier.send(notify.READY)

    def _reload(self, reason: str) -> None:
        try:
            config = self._load()
        except SecretAgentError as exc:
            log.error("config_reload_failed", reason=reason, error=str(exc))  # noqa: TRY400 - the message says it all
            return
        self._config = config
        logs.configure(level=config.log.level, fmt=config.log.format)
        log.info("config_reloaded", reason=reason)
        self._wake.set()
        self._watch_stop.set()  # the files to watch may have moved

    # -- polling -------------------------------------------------------------

    def _policy(self) -> Policy:
        s = self._config.sync
        return Policy(
            interval=s.interval,
            jitter=s.jitter,
            backoff_initial=s.backoff_initial,
            backoff_max=s.backoff_max,
        )

    async def _poll_loop(self) -> None:
        while True:
            try:
                report = await self._sync_until_good()
            except Stopping:
                return  # stopping: the gate refused to start an apply
            delay = poll_delay(self._policy(), self._rng)
            self._after_good(report, delay)
            await self._sleep(delay)

    async def _sync_until_good(self) -> SyncReport:
        retrying = AsyncRetrying(
            stop=stop_never,
            wait=self._retry_wait,
            sleep=self._sleep,
            retry=retry_if_exception(lambda exc: not isinstance(exc, Stopping)),
            before_sleep=self._after_failure,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await run_in_thread(self._pass)
        raise RuntimeError("unreachable: the daemon retries forever")

    def _pass(self) -> SyncReport:
        # One holder across polls: the agent RPC's connection stays open between them,
        # and a reloaded config replaces only the clients whose settings changed.
        config = self._config
        clients = self._clients
        self._clients = make_client(config) if clients is None else clients.renewed(config)
        return run_pass(
            config, self._clients, last_good=self._memory, gate=self._gate, release=self._release
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

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when woken (SIGHUP, a new token, stopping)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()
        if self._stop.is_set():
            raise asyncio.CancelledError

    def _after_good(self, report: SyncReport, delay: float) -> None:
        log_report(report)
        self._last_good = now_iso()
        self._last_report = report
        targets = {
            o.path
            for o in report.outcomes
            if o.state not in (FileState.REMOVED, FileState.FOREIGN, FileState.LEFT)
        }
        if targets != self._targets:
            self._targets = frozenset(targets)
            self._watch_stop.set()
        self._write_status("synced", next_in=delay)
        self._notifier.status(
            f"synced {report.secrets} secrets at {self._last_good}; next poll in {delay:.0f}s"
        )
        if not self._ready:
            self._ready = True
            self._notifier.send(notify.READY)
        if self._companion is not None:
            self._companion.on_good_pass(report)

    def _after_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        kind = type(exc).__name__
        event = "coder_unauthorized" if isinstance(exc, UnauthorizedError) else "sync_failed"
        log.error(
            event,
            error=str(exc),
            kind=kind,
            attempt=state.attempt_number,
            retry_in=round(delay, 3),
            backoff_ceiling=backoff_ceiling(self._policy(), state.attempt_number),
            files="kept as last applied",
        )
        self._write_status(
            "retrying", next_in=delay, error=str(exc), kind=kind, failures=state.attempt_number
        )
        self._notifier.status(
            f"{kind} (attempt {state.attempt_number}); retrying in {delay:.1f}s;"
            " files kept as last applied"
        )

    # -- watching ------------------------------------------------------------

    def _watch_set(self) -> WatchSet:
        config = self._config
        targets = set(self._targets)
        if config.env_file.path:
            targets.add(config.env_file.path)
        return watch_set(targets, [config.source_file, config.coder.token_file])

    async def _watch_loop(self) -> None:
        from watchfiles import awatch  # the daemon only: `run --once` never pays for it

        loop = asyncio.get_running_loop()
        previous: WatchSet | None = None
        while not self._stop.is_set():
            self._watch_stop.clear()
            watched = self._watch_set()
            if watched != previous:
                log.debug("watching", dirs=watched.dirs)
                # A change made before the new watches are in place raises no event:
                # check once the watcher is up (inotify setup takes milliseconds).
                loop.call_later(RESTORE_CHECK_DELAY, self._restore_wanted.set)
                previous = watched
            if not watched.dirs:
                await self._watch_stop.wait()
                continue
            async for changes in awatch(
                *watched.dirs,
                watch_filter=None,
                recursive=False,
                debounce=400,
                step=30,
                stop_event=self._watch_stop,
            ):
                reaction = classify(changes, watched)
                if Reaction.RELOAD in reaction:
                    self._reload("config or token file changed")
                if Reaction.REWATCH in reaction:
                    self._watch_stop.set()
                if Reaction.RESTORE in reaction:
                    self._restore_wanted.set()

    async def _restore_loop(self) -> None:
        while True:
            await self._restore_wanted.wait()
            self._restore_wanted.clear()
            await self._restore()

    async def _restore(self) -> None:
        config = self._config
        try:
            report = await run_in_thread(
                lambda: restore_pass(
                    config, lambda: self._memory.state, gate=self._gate, release=self._release
                )
            )
        except Stopping:
            return
        except Exception as exc:  # noqa: BLE001 - a failed restore must not end the daemon
            log.error("restore_failed", error=str(exc), kind=type(exc).__name__)  # noqa: TRY400 - expected; no traceback
            return
        if report is not None:
            log_restore(report)
            if any(o.state is FileState.WRITTEN for o in report.outcomes):
                # A restore may have recreated a directory: watches on the old inode
                # see nothing, so rebuild them.
                self._watch_stop.set()

    # -- systemd watchdog ----------------------------------------------------

    async def _watchdog_loop(self) -> None:
        interval = self._notifier.watchdog_interval
        if not interval:
            return
        while True:
            self._notifier.send(notify.WATCHDOG)
            await asyncio.sleep(interval)

    # -- plumbing ------------------------------------------------------------

    def _write_status(
        self,
        phase: str,
        *,
        next_in: float | None = None,
        error: str = "",
        kind: str = "",
        failures: int = 0,
    ) -> None:
        coder = self._config.coder
        status = daemon_status(
            self._last_report,
            phase=phase,
            started_at=self._started,
            last_good_sync=self._last_good,
            env_file=self._config.env_file.path,
            source=source_of(coder.url, coder.agent_url, coder.user),
            next_in=next_in,
            error=error,
            kind=kind,
            failures=failures,
        )
        try:
            write_status(self._config.sync.state_dir, status)
        except (SecretAgentError, OSError) as exc:
            log.warning("status_write_failed", error=str(exc))
