"""One pass: fetch -> desired state -> (converge: plan -> apply).

Used by `run --once`, each poll of the daemon, `check` (which stops after the plan)
and a stale `exec`. The network is used before the state lock is taken, so a slow
Coder never blocks an `exec` reading local state; plan and apply run under the lock
(`converge`), so what the plan observed is still true when apply acts.

Nothing here decides about retries: a `CoderError` leaves the pass before anything
on disk is touched, which is what keeps the last known good state in place.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

from secret_agent.actions import Plan, SyncReport
from secret_agent.coder import Clients
from secret_agent.config import Config
from secret_agent.converge import NO_GATE, apply_state, locked_plan
from secret_agent.fetch import fetch_state
from secret_agent.model import DesiredState
from secret_agent.recall import LastGood, recall_state


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedPass:
    """What a dry run found: the desired state and the plan it would apply."""

    desired: DesiredState
    plan: Plan


def previous_state(config: Config, last_good: LastGood | None) -> DesiredState:
    """What the values of unchanged secrets are taken from: the last known good state
    in memory, else what can be read back from disk (`recall`)."""
    state = last_good.state if last_good is not None else None
    return state if state is not None else recall_state(config.sync.state_dir)


def plan_pass(config: Config, clients: Clients) -> PlannedPass:
    """Fetch and plan without touching the disk (`check`).

    Raises:
        CoderError, ValueSourceError, LedgerError: as `run_pass`.
    """
    desired = fetch_state(config, clients, previous=previous_state(config, None))
    with locked_plan(config, desired) as (plan, _ledger):
        return PlannedPass(desired=desired, plan=plan)


def run_pass(
    config: Config,
    clients: Clients,
    *,
    last_good: LastGood | None = None,
    gate: AbstractContextManager[object] = NO_GATE,
    release: bool = True,
) -> SyncReport:
    """Fetch, plan and apply; raises only for pass-wide failures.

    `last_good` (the daemon's, or exec's) supplies the values of unchanged secrets
    and remembers the state this pass applies. `gate` is entered before the state
    lock, around plan and apply: the daemon's way to refuse to start applying once it
    is stopping, and to wait for an apply to end.

    Raises:
        CoderError: Coder could not be asked; nothing on disk was touched.
        ValueSourceError: a changed secret's value cannot be obtained; nothing touched.
        LedgerError: the ledger is corrupt; nothing touched.
    """
    desired = fetch_state(config, clients, previous=previous_state(config, last_good))
    return apply_state(config, desired, gate=gate, keep=last_good, release=release)
