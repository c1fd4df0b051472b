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
from typing import Final

from secret_agent.actions import Plan, SyncReport
from secret_agent.coder import AgentClient, CoderClient
from secret_agent.config import Config
from secret_agent.converge import NO_GATE, apply_state, locked_plan
from secret_agent.errors import ConfigError, CredentialsError, ValueSourceError
from secret_agent.fetch import fetch_desired, fetch_manifest_only
from secret_agent.model import DesiredState
from secret_agent.recall import LastGood, recall_state
from secret_agent.sources import NO_AGENT, check_agent_only, make_source

# One GetManifest may carry megabytes and may need buildinfo and an upgrade first, so
# its overall deadline is this many `coder.timeout`s: 30 s by default (§6 of the RPC
# reference), and configurable through `coder.timeout`.
AGENT_DEADLINE_FACTOR: Final = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedPass:
    """What a dry run found: the desired state and the plan it would apply."""

    desired: DesiredState
    plan: Plan


class Clients:
    """The REST client and the agent RPC client of one configuration, each made on first use.

    The daemon keeps one holder across polls, so the REST client's connection pool and
    the agent RPC's WebSocket are reused; `renewed` swaps it for a new configuration,
    keeping each client whose settings did not change. With no session token the
    holder is in agent-only mode: no REST client, the manifest is the desired state.
    Thread-compatible: one pass at a time uses it; `close` may come from any thread.
    """

    def __init__(self, config: Config) -> None:
        """Check that the configuration can reach Coder; nothing is connected yet.

        Raises:
            ConfigError: no Coder URL for the credentials there are.
            CredentialsError: neither a session token nor an agent token is available.
        """
        coder = config.coder
        agent_only = coder.token is None and coder.agent_token is not None
        if not coder.url and not (agent_only and coder.agent_url):
            raise ConfigError(
                "no Coder URL: set coder.url in the config file, CODER_URL, or run"
                " `coder login` (with only an agent token, CODER_AGENT_URL also works)",
                key="coder.url",
            )
        if coder.token is None and coder.agent_token is None:
            raise CredentialsError(
                "no Coder credentials: set CODER_SESSION_TOKEN, coder.token_file, or run"
                " `coder login` (inside a workspace, CODER_AGENT_TOKEN also works)"
            )
        self.config = config
        self._rest: CoderClient | None = None
        self._agent: AgentClient | None = None

    @property
    def agent_only(self) -> bool:
        """No session token: values and targets come from the agent manifest alone."""
        return self.config.coder.token is None

    @property
    def has_agent(self) -> bool:
        return self.config.coder.agent_token is not None

    def rest(self) -> CoderClient:
        """The REST client (made now if needed); `requests` counts what it sent."""
        if self._rest is None:
            coder = self.config.coder
            self._rest = CoderClient(
                url=coder.url,
                token=coder.token,
                user=coder.user,
                timeout=coder.timeout,
                ca_file=coder.ca_file,
            )
        return self._rest

    def agent(self) -> AgentClient:
        """The agent RPC client (made now if needed; it connects on its first call).

        Raises:
            ValueSourceError: there is no agent token.
        """
        if self._agent is None:
            coder = self.config.coder
            if coder.agent_token is None:
                raise ValueSourceError(f"the agent RPC is needed, but {NO_AGENT}")
            self._agent = AgentClient(
                url=coder.agent_url or coder.url,
                token=coder.agent_token,
                timeout=AGENT_DEADLINE_FACTOR * coder.timeout,
                ca_file=coder.ca_file,
            )
        return self._agent

    def renewed(self, config: Config) -> Clients:
        """The holder for `config`: this one if it is the same object, else a new one
        that takes over each client whose settings are unchanged (the others close).

        Raises:
            ConfigError, CredentialsError: as the constructor.
        """
        if config is self.config:
            return self
        fresh = Clients(config)
        if _rest_key(config) == _rest_key(self.config):
            fresh._rest, self._rest = self._rest, None
        if _agent_key(config) == _agent_key(self.config):
            fresh._agent, self._agent = self._agent, None
        self.close()
        return fresh

    def close(self) -> None:
        """Close whatever clients were made."""
        rest, agent, self._rest, self._agent = self._rest, self._agent, None, None
        if rest is not None:
            rest.close()
        if agent is not None:
            agent.close()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rest_key(config: Config) -> tuple[object, ...]:
    c = config.coder
    return (c.url, c.token, c.user, c.timeout, c.ca_file)


def _agent_key(config: Config) -> tuple[object, ...]:
    c = config.coder
    return (c.agent_url or c.url, c.agent_token, c.timeout, c.ca_file)


def make_client(config: Config) -> Clients:
    """The clients for the configured deployment and user (see `Clients`).

    Raises:
        ConfigError: no Coder URL is configured anywhere.
        CredentialsError: neither a session token nor an agent token is available.
    """
    return Clients(config)


def fetch_state(config: Config, clients: Clients, *, previous: DesiredState) -> DesiredState:
    """Ask Coder for the desired state, reusing `previous`'s values of unchanged secrets.

    Raises:
        CoderError: Coder could not be asked.
        ValueSourceError: a changed secret's value cannot be obtained.
    """
    kind = config.values.source
    if clients.agent_only:
        check_agent_only(kind)
        return fetch_manifest_only(clients.agent())
    source = make_source(
        clients.rest(), kind=kind, agent=clients.agent if clients.has_agent else None
    )
    return fetch_desired(clients.rest(), source, previous=previous)


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
