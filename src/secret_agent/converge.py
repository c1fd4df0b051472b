"""Converge: make the disk match a desired state, with no network.

Plan (desired x ledger x disk) and apply under the state lock, then record the
ledger. Used after a fetch (`passes`), to restore a file someone else changed (the
daemon, from its last known good state in memory), and by `exec` starting from the
values it read back (`recall`), which is why nothing here may import httpx or the
Coder client. No value is ever written to `state_dir`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from secret_agent import files
from secret_agent.actions import Plan, SyncReport, WriteEnvFile, WriteFile
from secret_agent.apply import Applied, apply_plan
from secret_agent.config import Config
from secret_agent.ledger import (
    ENV_FILE_SECRET,
    Ledger,
    LedgerEntry,
    ledger_path,
    load_ledger,
    save_ledger,
)
from secret_agent.model import DesiredState, FileState, Version
from secret_agent.plan import Targets, make_plan
from secret_agent.recall import LastGood

NO_GATE: AbstractContextManager[object] = nullcontext()
# The `updated_at` of a catalog entry whose write failed: no timestamp looks like it.
UNWRITTEN = "!unwritten"


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
        protected=protected_paths(config),
        existing_files=config.sync.existing_files,
    )


def protected_paths(config: Config) -> tuple[tuple[str, str, bool], ...]:
    """secret-agent's own files, which no secret may target (README "What it writes"), each as
    configured and with its symlinks resolved: (path, what it is, whole tree)."""
    own = [
        (config.config_path, "the secret-agent config file", False),
        (config.coder.token_file, "the Coder session token file", False),
        (config.coder.login_dir, "the `coder login` directory", True),
        (config.sync.state_dir, "secret-agent's state_dir", True),
    ]
    found: dict[str, tuple[str, str, bool]] = {}
    for path, what, below in own:
        if path:
            for form in (path, os.path.realpath(path)):
                found.setdefault(form, (form, what, below))
    return tuple(found.values())


def restore_pass(
    config: Config,
    load: Callable[[], DesiredState | None],
    *,
    gate: AbstractContextManager[object] = NO_GATE,
    release: bool = True,
) -> SyncReport | None:
    """Re-apply a state known locally without asking Coder (a file was changed or
    removed by someone else). None when `load` has no state to restore from.

    `load` runs under the lock: a state read before it could be one a pass has just
    replaced, and applying it would put old values back. `release=False` (for
    `exec`, whose flags may differ from the daemon's config, and for a state read
    back from disk, which may be incomplete) leaves every target it does not claim,
    and its ledger entry, alone.
    """
    return _apply(config, load, gate=gate, keep=None, release=release)


def apply_state(
    config: Config,
    desired: DesiredState,
    *,
    gate: AbstractContextManager[object] = NO_GATE,
    keep: LastGood | None = None,
    release: bool = True,
) -> SyncReport:
    """Plan and apply `desired` under the state lock; `keep` remembers it, under the
    lock, as the last known good state; `release` as in `restore_pass`."""
    report = _apply(config, lambda: desired, gate=gate, keep=keep, release=release)
    if report is None:  # only a loader returning None gets here
        raise AssertionError("apply_state: no desired state")
    return report


def _apply(
    config: Config,
    load: Callable[[], DesiredState | None],
    *,
    gate: AbstractContextManager[object],
    keep: LastGood | None,
    release: bool,
) -> SyncReport | None:
    state_dir = config.sync.state_dir
    with gate, _termination_deferred(), files.lock_exclusive(state_dir):
        desired = load()
        if desired is None:
            return None
        plan, ledger = plan_locked(config, desired, release=release)
        announced = write_ahead(plan, ledger)
        if announced != ledger:
            save_ledger(state_dir, announced)
        applied = apply_plan(
            plan,
            ledger,
            roots=config.sync.allowed_roots,
            file_mode=config.sync.file_mode,
            dir_mode=config.sync.dir_mode,
        )
        if keep is not None:
            # Now, before the ledger: the files hold this state even if saving fails,
            # and a restore from an older memory would put old values back.
            keep.remember(desired)
        catalog = _catalog(desired, ledger, release=release, unwritten=_unwritten(plan, applied))
        result = Ledger.of(applied.ledger.entries.values(), catalog)
        if result != announced:
            save_ledger(state_dir, result)  # sweeps state_dir's dead temp files too
        else:
            files.sweep_temps(ledger_path(state_dir), roots=None)
    return SyncReport(
        outcomes=applied.outcomes,
        refused=plan.refused + applied.refused,
        requests=desired.requests,
        bytes_written=applied.bytes_written,
        secrets=len(desired.secrets),
        failed=desired.failed,
        variables=_variables(plan),
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


def write_ahead(plan: Plan, ledger: Ledger) -> Ledger:
    """`ledger` plus a pending entry for each target this plan writes for the first
    time: saved before applying, so a process killed between a rename and the final
    ledger still knows which file it wrote (and where the original went), and the
    next pass neither mistakes its own file for the user's nor loses a backup."""
    entries = dict(ledger.entries)
    writes: list[WriteFile | WriteEnvFile] = [a for a in plan.files if isinstance(a, WriteFile)]
    if plan.env_file is not None:
        writes.append(plan.env_file)
    for action in writes:
        known = entries.get(action.path)
        if (known is not None and not known.pending) or getattr(action, "mode_only", False):
            continue
        if isinstance(action, WriteEnvFile) and action.unchanged:
            continue
        entries[action.path] = LedgerEntry(
            path=action.path,
            secret=action.secret if isinstance(action, WriteFile) else ENV_FILE_SECRET,
            sha=action.sha,
            backup=action.backup,
            backup_mode=action.backup_mode,
            pending=True,
        )
    return Ledger.of(entries.values(), ledger.catalog)


def _catalog(
    desired: DesiredState, ledger: Ledger, *, release: bool, unwritten: set[str]
) -> list[tuple[str, Version]]:
    """The secrets of `desired` at their versions; a secret that failed to fetch and has
    no state in `desired` keeps its old catalog entry (what is on disk is that one).
    Without `release` (exec), every other secret of the old catalog stays in it too.

    A secret with a target whose write failed is recorded at no version that anything
    on disk has: its old file must not be read back as the current value, even where
    versions cannot tell (the agent source has no `updated_at`)."""
    old = dict(ledger.catalog)
    catalog = {} if release else dict(old)
    catalog.update(
        {
            s.name: s.version._replace(updated_at=UNWRITTEN) if s.name in unwritten else s.version
            for s in desired.secrets
        }
    )
    for name, _why in desired.failed:
        if name not in catalog and name in old:
            catalog[name] = old[name]
    return list(catalog.items())


def _unwritten(plan: Plan, applied: Applied) -> set[str]:
    failed = {o.path for o in applied.outcomes if o.state is FileState.FAILED}
    names = {a.secret for a in plan.files if isinstance(a, WriteFile) and a.path in failed}
    if plan.env_file is not None and plan.env_file.path in failed:
        names.update(v.secret for v in plan.env_file.written)
    return names


def _variables(plan: Plan) -> tuple[tuple[str, str], ...]:
    if plan.env_file is None:
        return ()
    return tuple((v.secret, v.name) for v in plan.env_file.written)


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
        resolve=os.path.realpath,
    )
    return plan, ledger
