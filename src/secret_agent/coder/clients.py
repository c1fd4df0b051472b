"""The clients of one configuration: the REST client and the agent RPC client.

`Clients` is what a pass talks to Coder through. It checks up front that the
configuration can reach Coder at all, makes each client on first use (so a pass that
needs no value never opens the agent RPC's WebSocket), and is kept by the daemon
across polls so connections are reused; `renewed` carries them over a reload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from secret_agent.coder.agent import AgentClient
from secret_agent.coder.rest import CoderClient
from secret_agent.errors import ConfigError, CredentialsError, ValueSourceError

if TYPE_CHECKING:
    from secret_agent.config import Config

NO_AGENT: Final = "no agent token is set (CODER_AGENT_TOKEN, set in every Coder workspace)"

# One GetManifest may carry megabytes and may need buildinfo and an upgrade first, so
# its overall deadline is this many `coder.timeout`s: 30 s by default (docs/agent-rpc.md
# §6), and configurable through `coder.timeout`.
AGENT_DEADLINE_FACTOR: Final = 3.0


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
