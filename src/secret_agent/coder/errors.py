"""Errors of the workspace agent RPC (`reference/coder-agent-rpc.md`), under `CoderError`.

They live in the `coder` package, beside the codecs that raise them, so the codecs and
the dev server can share them without touching `secret_agent.errors`::

    CoderError
    └── AgentRPCError              the agent RPC failed
        ├── AgentProtocolError     yamux, drpc or API-version trouble (retryable unless a
        │                          version mismatch)
        ├── ManifestError          the Manifest protobuf cannot be decoded
        └── AgentRPCStatusError    the server answered with a drpc Error packet (code, text)
    UnauthorizedError
    └── AgentTokenRejectedError    401/403 at the agent RPC's door: the agent token

Messages name sizes, stream ids, kinds and field numbers, never payload bytes or values.
The one piece of peer text that reaches a message is a drpc Error's text, which is
coderd's own error string, as `CoderAPIError` carries Coder's `message`.
"""

from __future__ import annotations

from typing import Final

from secret_agent.errors import CoderError, UnauthorizedError

# Prefix of drpc's "no such RPC" text (§3.8, §7.5): a renamed service, not a hiccup.
_UNKNOWN_RPC_PREFIX: Final = "protocol error: unknown rpc:"


class AgentRPCError(CoderError):
    """Calling the workspace agent's RPC failed."""


class AgentProtocolError(AgentRPCError):
    """The peer broke the yamux or drpc framing rules, or the API versions do not match.

    `retryable` is true by default: a torn session is usually a network or restart
    event. Pass `retryable=False` for a version mismatch, which waiting cannot fix.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


class ManifestError(AgentRPCError):
    """The Manifest (or GetManifestRequest) protobuf is malformed or unusable.

    Not retryable: the same server sends the same bytes again.
    """

    retryable = False


class AgentRPCStatusError(AgentRPCError):
    """The server failed the call with a drpc Error packet (§3.8).

    `code` is drpc's uint64 code (0 means none, 12 Unimplemented); `message` is the
    server's error text. Code 0 is retryable (a database hiccup, §7.3) unless the text
    says the RPC does not exist, which only an upgrade fixes.
    """

    def __init__(self, *, code: int, message: str) -> None:
        self.code = code
        self.message = message
        self.retryable = code == 0 and not message.startswith(_UNKNOWN_RPC_PREFIX)
        super().__init__(f"agent RPC failed (drpc code {code}): {message}")


class AgentTokenRejectedError(UnauthorizedError):
    """401 (or an old server's 403) from the agent RPC endpoint: the agent token is bad.

    An `UnauthorizedError`, so callers treat it as any rejected credential; its text
    names the agent token rather than the session token.
    """

    def __str__(self) -> str:
        return (
            CoderError.__str__(self) + " - the workspace agent token (CODER_AGENT_TOKEN) was"
            " rejected: it is not a current agent token of a running workspace (a rebuild"
            " issues a new one)"
        )
