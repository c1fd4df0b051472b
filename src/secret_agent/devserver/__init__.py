"""A local Coder-compatible user-secrets server, for trying and testing the agent.

`secret-agent dev-server` runs it (as `vault server -dev` does for Vault); tests use
`ThreadedDevServer`. It speaks Coder's REST API for user secrets with Coder's rules
and error bodies, optionally returns values inline (Coder never does), and emulates
the workspace agent RPC's `GetManifest` (`agentrpc`), the way Coder really hands out
values, with agent tokens kept in the store.

No agent module but `cli` imports this package. starlette and uvicorn (the
`secret-agent[devserver]` extra) are imported only when a server is built, so
`create_app`, `AgentRPC` and `Fault` are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secret_agent.devserver.records import StoredSecret, StoreError, User
from secret_agent.devserver.server import ThreadedDevServer, add_arguments, main, serve
from secret_agent.devserver.store import Store
from secret_agent.devserver.validation import CODER_LIMITS, Limits

if TYPE_CHECKING:
    from secret_agent.devserver.agentrpc import AgentRPC, Fault
    from secret_agent.devserver.app import create_app

__all__ = [
    "CODER_LIMITS",
    "AgentRPC",
    "Fault",
    "Limits",
    "Store",
    "StoreError",
    "StoredSecret",
    "ThreadedDevServer",
    "User",
    "add_arguments",
    "create_app",
    "main",
    "serve",
]


def __getattr__(name: str) -> object:
    # PEP 562: these need starlette, which the rest of the package does not.
    if name == "create_app":
        from secret_agent.devserver.app import create_app

        return create_app
    if name in ("AgentRPC", "Fault"):
        from secret_agent.devserver import agentrpc

        return getattr(agentrpc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
