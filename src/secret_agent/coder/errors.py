"""The wire layer's errors: the agent RPC's, and a redirect never followed.

They are branches of the one tree drawn in `secret_agent.errors` (marked * there), kept
beside the codecs and clients that raise them. Messages name sizes, stream ids, kinds,
field numbers and hosts, never payload bytes, values or tokens. The one piece of peer
text that reaches a message is a drpc Error's text, which is coderd's own error string,
as `CoderAPIError` carries Coder's `message`.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urljoin, urlsplit

from secret_agent.errors import CoderError, CoderResponseError, UnauthorizedError

# A hostile Location is shown as at most this much of its host, printable ASCII only.
_MAX_HOST_CHARS: Final = 255
# Prefix of drpc's "no such RPC" text (docs/agent-rpc.md §3.8, §7.5): a renamed
# service, not a hiccup.
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


class CoderRedirectError(CoderResponseError):
    """A 3xx answer. secret-agent never follows one, so no token reaches the host it
    points to; the message names that host (never the rest of the Location, which may
    carry a login page's query or credentials) and the setting that fixes it.

    `location_host` is the Location's `host[:port]`, resolved against the request's
    URL, or "" when there is no usable Location.

    Not retryable: a redirect is how the deployment, or a proxy or login page in front
    of it, is set up, and the same request meets the same answer; `exec` does not ride
    it out on stale values. The daemon still tries again at its backoff cap, so a
    redirect that goes away (a maintenance or SSO page) heals without a restart.
    """

    retryable = False

    def __init__(
        self, *, method: str, url: str, status: int, location: str | None, setting: str
    ) -> None:
        self.location_host = redirect_host(url, location)
        to = (
            f"a redirect to {self.location_host}"
            if self.location_host
            else "a redirect without a usable Location"
        )
        super().__init__(
            f"{method} {url} answered HTTP {status}, {to}; secret-agent never follows"
            f" redirects (no token is sent there): point {setting} at the deployment's own URL",
            status=status,
        )


def redirect_host(url: str, location: str | None) -> str:
    """`host[:port]` of `location` resolved against `url`; "" if there is none to show."""
    if not location:
        return ""
    try:
        parts = urlsplit(urljoin(url, location.strip()))
        host, port = parts.hostname or "", parts.port
    except ValueError:  # a port that is not a number, a broken IPv6 literal
        return ""
    shown = f"[{host}]" if ":" in host else host
    if port is not None:
        shown += f":{port}"
    shown = "".join(c if 0x21 <= ord(c) <= 0x7E else "?" for c in shown[:_MAX_HOST_CHARS])
    return shown if host else ""
