"""One pass: fetch -> desired state -> plan -> apply -> report.

Used by `run --once`, each poll of the daemon, and `check` (which stops after the
plan). The network is used before the state lock is taken, so a slow Coder never
blocks an `exec` reading local state; plan and apply run under the lock, so what the
plan observed is still true when apply acts.

Nothing here decides about retries: a `CoderError` leaves the pass before anything
on disk is touched, which is what keeps the last known good state in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

from secret_agent import files
from secret_agent.apply import apply_plan
from secret_agent.coder import CoderClient
from secret_agent.config import Config
from secret_agent.errors import ConfigError, CredentialsError
from secret_agent.fetch import fetch_desired
from secret_agent.ledger import Ledger, load_ledger, save_ledger
from secret_agent.model import DesiredState, Plan, SyncReport
from secret_agent.plan import Targets, make_plan
from secret_agent.snapshot import EMPTY as EMPTY_STATE
from secret_agent.snapshot import load_snapshot, save_snapshot
from secret_agent.sources import make_source

_NO_GATE: AbstractContextManager[object] = nullcontext()


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
    with _locked_plan(config, desired) as (plan, _ledger):
        return PlannedPass(desired=desired, plan=plan)


def run_pass(
    config: Config, client: CoderClient, *, gate: AbstractContextManager[object] = _NO_GATE
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


def restore_pass(
    config: Config, *, gate: AbstractContextManager[object] = _NO_GATE
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
    gate: AbstractContextManager[object] = _NO_GATE,
    save: bool = True,
) -> SyncReport:
    """Plan and apply `desired` under the state lock; `save` records it as the snapshot."""
    state_dir = config.sync.state_dir
    with gate, _locked_plan(config, desired) as (plan, ledger):
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
def _locked_plan(config: Config, desired: DesiredState) -> Iterator[tuple[Plan, Ledger]]:
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
