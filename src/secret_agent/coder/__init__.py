"""Talking to Coder: the user-secrets REST API and the workspace agent RPC.

Code outside this package imports from here only (the dev server also imports the
sans-I/O codecs `yamux`, `drpc` and `manifest` by name). The re-exports are lazy
(PEP 562): importing `secret_agent.coder.yamux` must not import httpx or websockets,
so the dev server and the codec tests stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secret_agent.coder.agent import AgentClient
    from secret_agent.coder.clients import Clients
    from secret_agent.coder.manifest import ManifestSecret
    from secret_agent.coder.rest import MAX_BODY_BYTES, UNSET, CoderClient

__all__ = [
    "MAX_BODY_BYTES",
    "UNSET",
    "AgentClient",
    "Clients",
    "CoderClient",
    "ManifestSecret",
]

_WHERE = {
    "MAX_BODY_BYTES": "secret_agent.coder.rest",
    "UNSET": "secret_agent.coder.rest",
    "CoderClient": "secret_agent.coder.rest",
    "AgentClient": "secret_agent.coder.agent",
    "Clients": "secret_agent.coder.clients",
    "ManifestSecret": "secret_agent.coder.manifest",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
