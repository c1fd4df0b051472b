"""Talking to Coder: the user-secrets REST API (and, later, the workspace agent RPC).

Code outside this package imports from here only.
"""

from __future__ import annotations

from secret_agent.coder.rest import MAX_BODY_BYTES, UNSET, CoderClient

__all__ = ["MAX_BODY_BYTES", "UNSET", "CoderClient"]
