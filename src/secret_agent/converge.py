"""Converge: make the disk match a desired state, with no network.

Plan (desired x ledger x disk) and apply under the state lock, then record the
ledger (and, when asked, the snapshot). Used after a fetch (`sync`), to restore a
file someone else changed (the daemon), and by `exec` starting from local state,
which is why nothing here may import httpx or the Coder client.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from secret_agent import files
from secret_agent.actions import Plan, SyncReport
from secret_agent.apply import apply_plan
from secret_agent.config import Config
from secret_agent.ledger import Ledger, load_ledger, save_ledger
from secret_agent.model import DesiredState
from secret_agent.plan import Targets, make_plan
from secret_agent.snapshot import load_snapshot, save_snapshot

NO_GATE: AbstractContextManager[object] = nullcontext()


def targets_of(config: Config, *, release: bool = True) -> Targets:
    return Targets(
        home=config.sync.home,
        roots=config.sync.allowed_roots,
        file_mode=config.sync.file_mode,
        prune=config.sync.prune,
        release=release,
        env_path=config.env_file.path,
        env_format=config.env_file.format,
        allow_reserved=config.env_file.allow_reserved,
    )


def restore_pass(
    config: Config, *, gate: AbstractContextManager[object] = NO_GATE, release: bool = True
) -> SyncReport | None:
    """Re-apply the last fetched state without asking Coder (a file was changed or
    removed by someone else). None when there is no snapshot to restore from.

    The snapshot is read under the lock: one read before it could be a state a pass
    has just replaced, and applying it would put old values back.
    `release=False` (for `exec`, whose flags may differ from the daemon's config)
    leaves every target it does not claim, and its ledger entry, alone.
    """
    return _apply(
        config, lambda: load_snapshot(config.sync.state_dir), gate=gate, save=False, release=release
    )


def apply_state(
    config: Config,
    desired: DesiredState,
    *,
    gate: AbstractContextManager[object] = NO_GATE,
    save: bool = True,
) -> SyncReport:
    """Plan and apply `desired` under the state lock; `save` records it as the snapshot."""
    report = _apply(config, lambda: desired, gate=gate, save=save, release=True)
    if report is None:  # only a loader returning None gets here
        raise AssertionError("apply_state: no desired state")
    return report


def _apply(
    config: Config,
    load: Callable[[], DesiredState | None],
    *,
    gate: AbstractContextManager[object],
    save: bool,
    release: bool,
) -> SyncReport | None:
    state_dir = config.sync.state_dir
    with gate, _termination_deferred(), files.lock_exclusive(state_dir):
        desired = load()
        if desired is None:
            return None
        plan, ledger = plan_locked(config, desired, release=release)
        applied = apply_plan(
            plan,
            ledger,
            roots=config.sync.allowed_roots,
            file_mode=config.sync.file_mode,
            dir_mode=config.sync.dir_mode,
        )
        if applied.ledger != ledger:
            save_ledger(state_dir, applied.ledger)
        if save:
            save_snapshot(state_dir, desired)
    return SyncReport(
        outcomes=applied.outcomes,
        refused=plan.refused + applied.refused,
        requests=desired.requests,
        bytes_written=applied.bytes_written,
        secrets=len(desired.secrets),
        variables=_variables(desired, plan),
        fingerprint=desired.fingerprint(),
    )


@contextmanager
def _termination_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT for this thread until the pass's files and ledger agree.

    A `run --once` or `exec` killed between a rename and the ledger write would leave a
    file nobody prunes; the signal is delivered (and acted on) right after instead.
    The daemon stops through its gate, so in its worker thread this changes nothing.
    """
    deferred = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _variables(desired: DesiredState, plan: Plan) -> tuple[tuple[str, str], ...]:
    if plan.env_file is None:
        return ()
    # The first secret to claim a name owns it (render_env refuses the rest).
    owner: dict[str, str] = {}
    for s in desired.secrets:
        if s.env_name in plan.env_file.variables:
            owner.setdefault(s.env_name, s.name)
    return tuple((name, env) for env, name in sorted(owner.items()))


@contextmanager
def locked_plan(config: Config, desired: DesiredState) -> Iterator[tuple[Plan, Ledger]]:
    """Hold the state lock while planning and whatever the caller does next."""
    with files.lock_exclusive(config.sync.state_dir):
        yield plan_locked(config, desired)


def plan_locked(
    config: Config, desired: DesiredState, *, release: bool = True
) -> tuple[Plan, Ledger]:
    """The plan for `desired` against the ledger and the disk; the caller holds the lock."""
    roots = config.sync.allowed_roots
    ledger = load_ledger(config.sync.state_dir)
    plan = make_plan(
        desired,
        ledger,
        targets=targets_of(config, release=release),
        observe_secret=lambda p: files.observe(p, roots=roots),
        observe_local=lambda p: files.observe(p, roots=None),
    )
    return plan, ledger
