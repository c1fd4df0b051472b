"""The benchmarks' common setup: a dev-server store with one user and n secrets.

Each secret has a file and an env variable, like a typical Coder user's. Imported by
the bench scripts (run as `python bench/<name>.py`, so this directory is on sys.path).
"""

from __future__ import annotations

from secret_agent.devserver import Limits, Store

USER = "developer"


def seeded_store(n: int) -> tuple[Store, str]:
    """A store holding `n` secrets for `USER` (Coder's 50-secret cap lifted when n > 50)."""
    limits = Limits(
        max_secrets=max(n, 50), max_total_value_bytes=1 << 30, max_env_value_bytes=1 << 30
    )
    store = Store(limits=limits)
    store.add_user(USER)
    token = store.issue_token(USER)
    for i in range(n):
        store.create_secret(
            USER,
            name=f"secret-{i:04d}",
            value=f"value-{i:04d}-" + "x" * 40,
            env_name=f"SECRET_{i:04d}",
            file_path=f"~/secrets/s{i:04d}/token",
        )
    return store, token
