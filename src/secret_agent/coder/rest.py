"""Coder's user-secrets REST API (docs/user-secrets-api.md), over httpx.

One method per endpoint. Every failure leaves this module as a typed `CoderError`
that says whether a retry can help; nothing here retries or sleeps (the policy lives
with the caller). Bodies are read with a 4 MiB cap, then checked for shape, so a
proxy's HTML page, a truncated body or a wrong type becomes a clear error. A redirect
is never followed (`CoderRedirectError` names the host it pointed to, and no token goes
there), and `timeout` bounds each request as a whole, body included
(`deadline.DeadlineTransport`), so a server that trickles its answer cannot hang a pass.

This module never logs, and never puts a request header, a token or a value into a
message: Coder's own `message`/`detail`/`validations` texts are the only body text
that reaches an exception.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import httpx

from secret_agent.coder.deadline import (
    DeadlineTransport,
    RequestDeadline,
    environment_proxy,
    ssl_context_for,
)
from secret_agent.coder.errors import CoderRedirectError
from secret_agent.errors import (
    CoderAPIError,
    CoderResponseError,
    CoderUnreachableError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    Validation,
)
from secret_agent.model import SecretMeta
from secret_agent.redact import Secret
from secret_agent.schedule import parse_retry_after

# Coder's own cap on a manifest; a user's list is at most 50 small records, so a body
# this size is already wrong, and reading more would only cost memory.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
TOKEN_HEADER: Final = "Coder-Session-Token"  # noqa: S105 - a header name
USER_AGENT: Final = "secret-agent"
# What a redirect's message tells the user to fix.
URL_SETTING: Final = "coder.url (CODER_URL)"

_STATUS_ERRORS: Final[Mapping[int, type[CoderAPIError]]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
}


class _Unset:
    """Marks a PATCH field as "leave unchanged": `None` cannot, since "" clears."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


class CoderClient:
    """A client for one user's secrets on one Coder deployment.

    `requests` counts the HTTP requests sent, so callers can report (and tests and
    benchmarks can assert) how many a pass took. Requests reuse one pooled connection.
    A `transport` given replaces `deadline.DeadlineTransport`, and with it the bound on
    each whole request (only httpx's per-operation `timeout` is left).
    """

    def __init__(
        self,
        *,
        url: str,
        token: Secret | None,
        user: str = "me",
        timeout: float = 10.0,
        ca_file: str = "",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self.requests = 0
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token is not None:
            headers[TOKEN_HEADER] = token.reveal()
        verify: ssl.SSLContext | bool = True
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        self._deadline = RequestDeadline()
        if transport is None:
            transport = DeadlineTransport(
                deadline=self._deadline,
                ssl_context=ssl_context_for(self.url, verify),
                proxy=environment_proxy(self.url),
            )
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"CoderClient(url={self.url!r}, user={self.user!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CoderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the five endpoints ---------------------------------------------------

    def list_secrets(self) -> list[SecretMeta]:
        """`GET /users/{user}/secrets`: every secret's metadata, in name order."""
        body = self._request("GET", self._collection())
        if not isinstance(body, list):
            raise CoderResponseError(
                f"secret list: expected a JSON array, got {type(body).__name__}", status=200
            )
        return [_meta(item, where=f"secret list item {i}") for i, item in enumerate(body)]

    def get_secret(self, name: str) -> tuple[SecretMeta, Secret | None]:
        """`GET /users/{user}/secrets/{name}`: metadata, and the value if the server sent one.

        Coder never sends a value; the dev server does with `--inline-values`.
        """
        body = self._request("GET", self._item(name))
        meta = _meta(body, where=f"secret {name!r}")
        value = body.get("value") if isinstance(body, dict) else None
        if value is None:
            return meta, None
        if not isinstance(value, str):
            raise CoderResponseError(f"secret {name!r}: field 'value' must be a string")
        return meta, Secret(value)

    def create_secret(
        self,
        *,
        name: str,
        value: Secret,
        description: str = "",
        env_name: str = "",
        file_path: str = "",
        enabled: bool | None = None,
    ) -> SecretMeta:
        """`POST /users/{user}/secrets`."""
        payload: dict[str, object] = {
            "name": name,
            "value": value.reveal(),
            "description": description,
            "env_name": env_name,
            "file_path": file_path,
        }
        if enabled is not None:
            payload["enabled"] = enabled
        body = self._request("POST", self._collection(), payload, expect=201)
        return _meta(body, where=f"created secret {name!r}")

    def update_secret(
        self,
        name: str,
        *,
        value: Secret | _Unset = UNSET,
        description: str | _Unset = UNSET,
        env_name: str | _Unset = UNSET,
        file_path: str | _Unset = UNSET,
        enabled: bool | _Unset = UNSET,
    ) -> SecretMeta:
        """`PATCH /users/{user}/secrets/{name}`: only the fields given are sent ("" clears)."""
        payload: dict[str, object] = {}
        if isinstance(value, Secret):
            payload["value"] = value.reveal()
        fields = {
            "description": description,
            "env_name": env_name,
            "file_path": file_path,
            "enabled": enabled,
        }
        payload.update({k: v for k, v in fields.items() if not isinstance(v, _Unset)})
        body = self._request("PATCH", self._item(name), payload)
        return _meta(body, where=f"updated secret {name!r}")

    def delete_secret(self, name: str) -> None:
        """`DELETE /users/{user}/secrets/{name}`."""
        self._request("DELETE", self._item(name), expect=204)

    # -- plumbing -------------------------------------------------------------

    def _collection(self) -> str:
        return f"/api/v2/users/{quote(self.user, safe='')}/secrets"

    def _item(self, name: str) -> str:
        return f"{self._collection()}/{quote(name, safe='')}"

    def _request(self, method: str, path: str, payload: object = None, *, expect: int = 200) -> Any:
        """Send one request; return the decoded JSON body (None for 204) or raise.

        The whole request, body included, ends within `timeout` seconds.
        """
        self.requests += 1
        content = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            with (
                self._deadline.bound(self._timeout) as budget,
                self._http.stream(method, path, content=content, headers=headers) as resp,
            ):
                raw = _read_capped(resp)
        except httpx.TimeoutException as exc:
            raise CoderUnreachableError(
                f"{method} {self.url}{path}: {budget.overrun(self._timeout)}"
            ) from exc
        except httpx.RemoteProtocolError as exc:
            raise CoderResponseError(
                f"{method} {self.url}{path}: the connection broke mid-answer"
                f" ({type(exc).__name__}); the body is incomplete"
            ) from exc
        except httpx.TransportError as exc:
            raise CoderUnreachableError(
                f"{method} {self.url}{path}: cannot reach Coder ({type(exc).__name__}: {exc})"
            ) from exc
        if 300 <= resp.status_code < 400:
            raise CoderRedirectError(
                method=method,
                url=f"{self.url}{path}",
                status=resp.status_code,
                location=resp.headers.get("location"),
                setting=URL_SETTING,
            )
        if resp.status_code != expect:
            raise _status_error(resp, raw, where=f"{method} {path}")
        if expect == 204:
            return None
        return _decode_json(resp, raw, where=f"{method} {path}")


def _read_capped(resp: httpx.Response) -> bytes:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise CoderResponseError(
            f"response body of {declared} bytes is over the {MAX_BODY_BYTES} byte cap",
            status=resp.status_code,
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise CoderResponseError(
                f"response body is over the {MAX_BODY_BYTES} byte cap", status=resp.status_code
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _describe_non_json(resp: httpx.Response, raw: bytes) -> str:
    ctype = resp.headers.get("content-type", "no content type").split(";")[0]
    hint = ""
    if ctype == "text/html" or raw.lstrip()[:1] == b"<":
        hint = (
            " - an HTML page, probably from a proxy, load balancer or login page in front of Coder"
        )
    return f"a non-JSON body ({ctype}, {len(raw)} bytes){hint}"


def _decode_json(resp: httpx.Response, raw: bytes, *, where: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = "an empty body" if not raw else _describe_non_json(resp, raw)
        if isinstance(exc, json.JSONDecodeError) and raw.lstrip()[:1] in (b"[", b"{"):
            what = f"truncated or malformed JSON ({exc.msg} at byte {exc.pos})"
        raise CoderResponseError(
            f"{where}: HTTP {resp.status_code} with {what}", status=resp.status_code
        ) from None


def _status_error(resp: httpx.Response, raw: bytes, *, where: str) -> CoderAPIError:
    status = resp.status_code
    cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else CoderAPIError)
    retry_after = parse_retry_after(resp.headers.get("retry-after"), now=datetime.now(UTC))
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        what = "an empty body" if not raw else _describe_non_json(resp, raw)
        if cls is NotFoundError:
            # Only Coder's own 404 says a secret is gone; a proxy's page says nothing
            # of it, and taking it for a deletion would remove the secret's file.
            cls = CoderAPIError
            what += ", not Coder's own answer"
        return cls(status=status, message=f"{where} answered with {what}", retry_after=retry_after)
    validations = [
        Validation(field=str(v.get("field", "")), detail=str(v.get("detail", "")))
        for v in body.get("validations") or []
        if isinstance(v, dict)
    ]
    detail = body.get("detail")
    return cls(
        status=status,
        message=body["message"],
        detail=detail if isinstance(detail, str) else "",
        validations=validations,
        retry_after=retry_after,
    )


_STR_FIELDS: Final = ("id", "description", "env_name", "file_path", "created_at", "updated_at")


def _meta(item: object, *, where: str) -> SecretMeta:
    """Check one UserSecret object's shape and turn it into a `SecretMeta`."""
    if not isinstance(item, dict):
        raise CoderResponseError(f"{where}: expected a JSON object, got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise CoderResponseError(f"{where}: field 'name' must be a non-empty string")
    fields: dict[str, str] = {}
    for key in _STR_FIELDS:
        raw = item.get(key)
        if raw is None:
            continue
        if not isinstance(raw, str):
            raise CoderResponseError(
                f"{where}: field {key!r} must be a string, got {type(raw).__name__}"
            )
        fields[key] = raw
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise CoderResponseError(f"{where}: field 'enabled' must be a boolean")
    return SecretMeta(name=name, enabled=enabled, **fields)
