"""Fetch: Coder's answers -> the desired state.

A steady-state fetch is exactly one list request: values are asked for only for
secrets that are new or whose `updated_at`, `env_name` or `file_path` changed since
the previous state; the others keep the previous state's value.
"""

from __future__ import annotations

from secret_agent.coder import CoderClient
from secret_agent.model import DesiredSecret, DesiredState, SecretMeta
from secret_agent.sources import ValueSource


def wanted(meta: SecretMeta) -> bool:
    """A secret is delivered when enabled and it names at least one target."""
    return meta.enabled and bool(meta.env_name or meta.file_path)


def fetch_desired(
    client: CoderClient, source: ValueSource, *, previous: DesiredState
) -> DesiredState:
    """List the user's secrets and build the desired state, fetching only what changed.

    Raises:
        CoderError: the list or a get failed (a 404 on a get is a deletion, not a failure).
        ValueSourceError: a changed secret's value cannot be obtained.
    """
    before = client.requests
    known = {s.name: s for s in previous.secrets}
    metas = [m for m in client.list_secrets() if wanted(m)]
    stale = [m for m in metas if m.name not in known or known[m.name].version != m.version]
    fetched = source.values_for(stale)
    secrets: list[DesiredSecret] = []
    for meta in metas:
        if meta.name in fetched:
            fresh, value = fetched[meta.name]
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
        requests=client.requests - before,
    )
