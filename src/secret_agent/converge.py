"""Converge: make the disk match a desired state, with no network.

Plan (desired x ledger x disk) and apply under the state lock, then record the
ledger (and, when asked, the snapshot). Used after a fetch (`sync`), to restore a
file someone else changed (the daemon), and by `exec` starting from local state,
which is why nothing here may import httpx or the Coder client.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def targets_of(config: Config) -> Targets:
    return Targets(
        home=config.sync.home,
        roots=config.sync.allowed_roots,
        file_mode=config.sync.file_mode,
        prune=config.sync.prune,
        env_path=config.env_file.path,
        env_format=config.env_file.format,
        allow_reserved=config.env_file.allow_reserved,
    )


def restore_pass(
    config: Config, *, gate: AbstractContextManager[object] = NO_GATE
) -> SyncReport | None:
    """Re-apply the last fetched state without asking Coder (a file was changed or
    removed by someone else). None when there is no snapshot to restore from."""
    desired = load_snapshot(config.sync.state_dir)
    if desired is None:
        return None
    return apply_state(config, desired, gate=gate, save=False)


def apply_state(
    config: Config,
    desired: DesiredState,
    *,
    gate: AbstractContextManager[object] = NO_GATE,
    save: bool = True,
) -> SyncReport:
    """Plan and apply `desired` under the state lock; `save` records it as the snapshot."""
    state_dir = config.sync.state_dir
    with gate, locked_plan(config, desired) as (plan, ledger):
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
    state_dir = config.sync.state_dir
    roots = config.sync.allowed_roots
    with files.lock_exclusive(state_dir):
        ledger = load_ledger(state_dir)
        plan = make_plan(
            desired,
            ledger,
            targets=targets_of(config),
            observe_secret=lambda p: files.observe(p, roots=roots),
            observe_local=lambda p: files.observe(p, roots=None),
        )
        yield plan, ledger
