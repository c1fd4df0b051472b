"""Fetch: Coder's answers -> the desired state.

With a session token, a steady-state fetch is exactly one list request: values are
asked for only for secrets that are new or whose `updated_at`, `env_name` or
`file_path` changed since the previous state (with the agent source, one GetManifest
serves all of them, and none is made when nothing changed); the others keep the
previous state's value.

With only an agent token there is no list and no cheap change detection: each fetch
is one GetManifest, which is the whole desired state. The plan compares it with what
is on disk, so unchanged secrets still write nothing.
"""

from __future__ import annotations

from secret_agent.coder import Clients, CoderClient
from secret_agent.config import Config
from secret_agent.model import DesiredSecret, DesiredState, SecretMeta
from secret_agent.sources import (
    ManifestReader,
    ValueSource,
    check_agent_only,
    make_source,
    manifest_secrets,
    read_manifest,
)


def wanted(meta: SecretMeta) -> bool:
    """A secret is delivered when enabled and it names at least one target."""
    return meta.enabled and bool(meta.env_name or meta.file_path)


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


def fetch_desired(
    client: CoderClient, source: ValueSource, *, previous: DesiredState
) -> DesiredState:
    """List the user's secrets and build the desired state, fetching only what changed.

    Raises:
        CoderError: the list or the GetManifest failed, or a get was refused for a
            reason that concerns every secret (401, 403, 429). Any other failed get
            fails that secret only: it keeps its previous state and is named in
            `DesiredState.failed` (a 404 is a deletion, not a failure).
        ValueSourceError: a changed secret's value cannot be obtained.
    """
    before = client.requests
    calls_before = source.rpc_calls
    known = {s.name: s for s in previous.secrets}
    metas = [m for m in client.list_secrets() if wanted(m)]
    stale = [m for m in metas if m.name not in known or known[m.name].version != m.version]
    fetched = source.values_for(stale)
    secrets: list[DesiredSecret] = []
    for meta in metas:
        if meta.name in fetched.failed:
            if meta.name in known:
                secrets.append(known[meta.name])  # its last applied state stays
        elif meta.name in fetched.values:
            fresh, value = fetched.values[meta.name]
            if not wanted(fresh):
                continue
            secrets.append(
                DesiredSecret(
                    name=fresh.name,
                    env_name=fresh.env_name,
                    file_path=fresh.file_path,
                    value=value,
                    version=fresh.version,
                )
            )
        elif meta.name in known and known[meta.name].version == meta.version:
            secrets.append(known[meta.name])
        # else: vanished between list and get; it counts as deleted.
    return DesiredState(
        secrets=tuple(sorted(secrets, key=lambda s: s.name)),
        requests=client.requests - before + source.rpc_calls - calls_before,
        failed=tuple(sorted(fetched.failed.items())),
    )


def fetch_manifest_only(agent: ManifestReader) -> DesiredState:
    """Agent-only mode: one GetManifest is the desired state (names made up, see
    `sources.manifest_secrets`).

    Raises:
        CoderError: the GetManifest failed.
        ValueSourceError: the manifest breaks Coder's uniqueness rules.
    """
    return DesiredState(secrets=manifest_secrets(read_manifest(agent)), requests=1)
