"""coder/agentgate.py: HTTP answers to the agent RPC upgrade (reference §1.5, §7.3) and
the server version gate (§7.1), as table rows of coderd's own bodies."""

from __future__ import annotations

import subprocess
import sys

import pytest

from secret_agent.coder.agentgate import check_server_version, refusal
from secret_agent.coder.errors import AgentProtocolError, AgentTokenRejectedError
from secret_agent.errors import (
    CoderAPIError,
    CoderResponseError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)

JSON = {"Content-Type": "application/json; charset=utf-8"}
TOKEN = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"

ROWS = [
    ("no-token", 401, b'{"message":"Cookie \\"coder_session_token\\" must be provided."}', {},
     AgentTokenRejectedError, "must be provided", False),
    ("old-build-403", 403, b'{"message":"Agent trying to connect from non-latest build."}', {},
     AgentTokenRejectedError, "non-latest build", False),
    ("bad-version", 400, b'{"message":"Unknown or unsupported API version","validations":'
     b'[{"field":"version","detail":"version 1.0 is no longer supported"}]}', {},
     AgentProtocolError, "version 1.0 is no longer supported", False),
    ("db-400", 400, b'{"message":"Internal error fetching workspace."}', {},
     CoderAPIError, "Internal error fetching workspace.", False),
    ("too-old", 404, b'{"message":"Route not found."}', {},
     AgentProtocolError, "no workspace agent RPC", False),
    ("rate-limited", 429, b'{"message":"You\'ve been rate limited."}', {"Retry-After": "7"},
     RateLimitedError, "rate limited", True),
    ("db-500", 500, b'{"message":"Internal error checking workspace agent authorization."}', {},
     ServerError, "HTTP 500", True),
    ("sso-page", 200, b"<html>Sign in</html>", {"Content-Type": "text/html"},
     CoderResponseError, "not Coder itself", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "status", "body", "extra", "error", "text", "retryable"),
    ROWS,
    ids=[r[0] for r in ROWS],
)
def test_refusal_maps_each_answer_to_a_typed_error(
    case: str,
    status: int,
    body: bytes,
    extra: dict[str, str],
    error: type,
    text: str,
    retryable: bool,
) -> None:
    """Each answer becomes the error a caller can act on, with Coder's words in it."""
    headers = {**JSON, **extra} if body.startswith(b"{") else extra
    exc = refusal(status, headers, body, api_version="2.0")
    assert type(exc) is error, case
    assert text in str(exc)
    assert exc.retryable is retryable
    if status == 429:
        assert exc.retry_after == 7.0  # type: ignore[attr-defined]


def test_rejected_agent_token_is_an_unauthorized_error_naming_the_agent_token() -> None:
    """401 at the RPC's door says which token, and is still an UnauthorizedError (exit 3)."""
    exc = refusal(401, JSON, b'{"message":"Workspace agent not authorized."}', api_version="2.0")
    assert isinstance(exc, UnauthorizedError)
    assert "CODER_AGENT_TOKEN" in str(exc)
    assert "session token" not in str(exc)


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("v2.33.0", True),
        ("v2.33.0-devserver", True),
        ("v2.40.2+abcdef", True),
        ("v0.0.0-devel+abcdef", True),
        ("v2.32.9", False),
        ("v2.31.0", False),
        ("v2.30.1", False),
        ("v1.9.0", False),
        ("nightly", False),
    ],
)
def test_version_gate(version: str, ok: bool) -> None:
    """v2.33+ and source builds pass; older releases and unreadable versions do not."""
    if ok:
        check_server_version(version)
        return
    with pytest.raises(AgentProtocolError) as caught:
        check_server_version(version)
    assert not caught.value.retryable


def test_codecs_import_without_httpx_or_websockets() -> None:
    """`secret_agent.coder`'s re-exports are lazy: the codecs the dev server shares stay light."""
    code = (
        "import sys, secret_agent.coder.yamux, secret_agent.coder.drpc, secret_agent.coder.manifest;"
        "print(sorted(m for m in ('httpx', 'websockets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
