"""Where secret values come from: `values.source` = inline | agent | auto.

Coder's REST API gives metadata only; a value comes either inline in the get-by-name
answer (the dev server with `--inline-values`) or from the workspace agent RPC's
`GetManifest`. A `ValueSource` hides which: given the metadata of the secrets whose
values are needed, it returns each one's (possibly newer) metadata and value, and
leaves out secrets that vanished meanwhile (a 404 between list and get is a deletion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from secret_agent.coder import CoderClient
from secret_agent.errors import NotFoundError, ValueSourceError
from secret_agent.model import SecretMeta, SourceKind
from secret_agent.redact import Secret, known_values

Fetched = Mapping[str, tuple[SecretMeta, Secret]]


class ValueSource(Protocol):
    """Supplies values for the named secrets; a secret missing from the result is gone."""

    def values_for(self, metas: Sequence[SecretMeta]) -> Fetched: ...


class InlineSource:
    """Values from the get-by-name response (`inline`, and the first try of `auto`)."""

    def __init__(self, client: CoderClient, *, kind: SourceKind, agent_available: bool) -> None:
        self._client = client
        self._kind = kind
        self._agent_available = agent_available

    def values_for(self, metas: Sequence[SecretMeta]) -> Fetched:
        found: dict[str, tuple[SecretMeta, Secret]] = {}
        for meta in metas:
            try:
                fresh, value = self._client.get_secret(meta.name)
            except NotFoundError:
                continue  # deleted between list and get
            if value is None:
                raise self._no_value(meta.name)
            known_values.add([value.reveal()])
            found[meta.name] = (fresh, value)
        return found

    def _no_value(self, name: str) -> ValueSourceError:
        if self._kind is SourceKind.INLINE:
            return ValueSourceError(
                f"secret {name!r}: values.source is 'inline' but the server sent no value;"
                " Coder itself never does (only `secret-agent dev-server --inline-values` does)"
            )
        agent = (
            "an agent token is set, but the agent RPC source is not available in this version"
            if self._agent_available
            else "no agent token is set (CODER_AGENT_TOKEN)"
        )
        return ValueSourceError(
            f"secret {name!r}: no way to get its value: the server's REST answer carries no"
            f" value (Coder's never does; the dev server's does with --inline-values), and"
            f" {agent}"
        )


def make_source(client: CoderClient, *, kind: SourceKind, agent_available: bool) -> ValueSource:
    """The value source for `values.source`.

    Raises:
        ValueSourceError: `agent` was asked for (the RPC source is not built yet).
    """
    if kind is SourceKind.AGENT:
        raise ValueSourceError(
            "values.source = 'agent' (the workspace agent RPC) is not available in this"
            " version; use 'inline' with a server that returns values, or 'auto'"
        )
    return InlineSource(client, kind=kind, agent_available=agent_available)
