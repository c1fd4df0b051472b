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

from secret_agent.coder import CoderClient
from secret_agent.config import Config
from secret_agent.converge import NO_GATE, apply_state, locked_plan
from secret_agent.errors import ConfigError, CredentialsError
from secret_agent.fetch import fetch_desired
from secret_agent.model import DesiredState, Plan, SyncReport
from secret_agent.snapshot import EMPTY as EMPTY_STATE
from secret_agent.snapshot import load_snapshot
from secret_agent.sources import make_source


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedPass:
    """What a dry run found: the desired state and the plan it would apply."""

    desired: DesiredState
    plan: Plan


def make_client(config: Config) -> CoderClient:
    """The REST client for the configured deployment and user.

    Raises:
        ConfigError: no Coder URL is configured anywhere.
        CredentialsError: neither a session token nor an agent token is available.
    """
    coder = config.coder
    if not coder.url:
        raise ConfigError(
            "no Coder URL: set coder.url in the config file, CODER_URL, or run `coder login`",
            key="coder.url",
        )
    if coder.token is None and coder.agent_token is None:
        raise CredentialsError(
            "no Coder credentials: set CODER_SESSION_TOKEN, coder.token_file, or run"
            " `coder login` (inside a workspace, CODER_AGENT_TOKEN also works)"
        )
    return CoderClient(
        url=coder.url,
        token=coder.token,
        user=coder.user,
        timeout=coder.timeout,
        ca_file=coder.ca_file,
    )


def fetch_state(config: Config, client: CoderClient) -> DesiredState:
    """Ask Coder for the desired state, reusing the snapshot's unchanged values.

    Raises:
        CoderError: Coder could not be asked.
        ValueSourceError: a changed secret's value cannot be obtained.
    """
    source = make_source(
        client, kind=config.values.source, agent_available=config.coder.agent_token is not None
    )
    previous = load_snapshot(config.sync.state_dir) or EMPTY_STATE
    return fetch_desired(client, source, previous=previous)


def plan_pass(config: Config, client: CoderClient) -> PlannedPass:
    """Fetch and plan without touching the disk (`check`).

    Raises:
        CoderError, ValueSourceError, LedgerError: as `run_pass`.
    """
    desired = fetch_state(config, client)
    with locked_plan(config, desired) as (plan, _ledger):
        return PlannedPass(desired=desired, plan=plan)


def run_pass(
    config: Config, client: CoderClient, *, gate: AbstractContextManager[object] = NO_GATE
) -> SyncReport:
    """Fetch, plan and apply; raises only for pass-wide failures.

    `gate` is entered before the state lock, around plan and apply: the daemon's way
    to refuse to start applying once it is stopping, and to wait for an apply to end.

    Raises:
        CoderError: Coder could not be asked; nothing on disk was touched.
        ValueSourceError: a changed secret's value cannot be obtained; nothing touched.
        LedgerError: the ledger is corrupt; nothing touched.
    """
    desired = fetch_state(config, client)
    return apply_state(config, desired, gate=gate, save=True)
