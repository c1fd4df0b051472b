"""Why a dial to the agent RPC is refused: the server version gate and the HTTP answers
to the upgrade (`docs/agent-rpc.md` §1.5, §7.1, §7.3).

Pure functions, kept apart from the client that calls them so each refusal is a plain
input -> error mapping. Messages carry Coder's own `message`/`detail` texts, status
codes and versions, never a token or a body that is not Coder's JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from secret_agent.coder.errors import AgentProtocolError, AgentTokenRejectedError
from secret_agent.errors import (
    CoderAPIError,
    CoderError,
    CoderResponseError,
    RateLimitedError,
    ServerError,
    Validation,
)
from secret_agent.schedule import parse_retry_after

RPC_PATH: Final = "/api/v2/workspaceagents/me/rpc"
MIN_ROLE_VERSION: Final = (2, 31)
MIN_SECRETS_VERSION: Final = (2, 33)
_VERSION: Final = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def check_server_version(version: str) -> None:
    """Refuse a Coder release the agent RPC must not be used against (§7.1).

    `v0.0.0-devel...` (a build from source) is accepted as current.

    Raises:
        AgentProtocolError: (not retryable) older than v2.31, older than v2.33, or a
            version that cannot be read.
    """
    found = _VERSION.match(version.strip())
    if found is None:
        raise AgentProtocolError(
            f"cannot read the Coder version {version[:80]!r} from /api/v2/buildinfo",
            retryable=False,
        )
    major, minor = int(found[1]), int(found[2])
    if major == 0:
        return
    if (major, minor) < MIN_ROLE_VERSION:
        raise AgentProtocolError(
            f"Coder {version} is older than v2.31: it ignores the agent RPC's role parameter, so"
            " our connection would be recorded as the workspace agent's own and its disconnect"
            " would mark the real agent disconnected; upgrade Coder (user secrets need v2.33)",
            retryable=False,
        )
    if (major, minor) < MIN_SECRETS_VERSION:
        raise AgentProtocolError(
            f"Coder {version} has no user secrets in the agent manifest (they need v2.33)",
            retryable=False,
        )


def json_object(raw: bytes | bytearray) -> dict[str, object] | None:
    """`raw` parsed as a JSON object, or None for anything else."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def refusal(
    status: int, headers: Mapping[str, str], body: bytes | bytearray, *, api_version: str
) -> CoderError:
    """The error for an upgrade answered with `status` instead of 101.

    401/403 reject the agent token; a 400 naming `version` is an incompatible API
    version and a 404 a server without the endpoint (neither retryable); 429 and 5xx
    are retryable; a non-JSON body never came from coderd.
    """
    where = f"agent RPC upgrade (GET {RPC_PATH})"
    doc = json_object(body)
    if doc is None or not isinstance(doc.get("message"), str):
        ctype = headers.get("Content-Type") or "no content type"
        return CoderResponseError(
            f"{where} answered HTTP {status} with a non-JSON body ({ctype}, {len(body)} bytes):"
            " not Coder itself - a proxy or login page in front of it?",
            status=status,
        )
    message, validations = str(doc["message"]), _validations(doc.get("validations"))
    versions = [v.detail for v in validations if v.field == "version"]
    if status == 400 and versions:
        return AgentProtocolError(
            f"{where}: Coder refuses agent API version {api_version} ({message}:"
            f" {'; '.join(versions)}); this secret-agent cannot talk to this Coder release",
            retryable=False,
        )
    if status == 404:
        return AgentProtocolError(
            f"{where}: HTTP 404 ({message}): this server has no workspace agent RPC"
            " (Coder before v2.8, or not Coder)",
            retryable=False,
        )
    after = headers.get("Retry-After") or ""
    return _API_ERRORS.get(status, ServerError if status >= 500 else CoderAPIError)(
        status=status,
        message=message,
        detail=str(doc.get("detail") or ""),
        validations=validations,
        retry_after=parse_retry_after(after, now=datetime.now(UTC)),
    )


_API_ERRORS: Final[Mapping[int, type[CoderAPIError]]] = {
    401: AgentTokenRejectedError,
    403: AgentTokenRejectedError,  # older servers: "Agent trying to connect from non-latest build."
    429: RateLimitedError,
}


def _validations(raw: object) -> list[Validation]:
    return [
        Validation(field=str(v.get("field", "")), detail=str(v.get("detail", "")))
        for v in (raw if isinstance(raw, list) else [])
        if isinstance(v, dict)
    ]
