"""The dev server's HTTP face: Coder's user-secrets REST API, on starlette.

Routes, status codes and error bodies follow `docs/user-secrets-api.md`
§1 and §5, so the agent can be tested here
and meet no surprise against Coder. The one extension is `inline_values`: when on, the
get-by-name answer carries `"value"` (Coder never sends a value; a list never does).
The workspace agent RPC (`GET /api/v2/workspaceagents/me/rpc`, the way Coder really
hands out values) is served by `agentrpc`; this module mounts it and renders its
refusals like every other error.

Every answer is JSON with `application/json; charset=utf-8`; every refusal, from the
store or from the door checks here, is a `StoreError` rendered as Coder's
`{message, detail?, validations?}`. Request bodies are never echoed in an error, so no
value can come back in one. Each request is appended to `app.state.request_log` as
`(method, raw path)` so a test can count what a client did.

Only `server.py` imports this module (starlette is an optional extra).
"""

from __future__ import annotations

import json
import uuid
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from secret_agent.devserver.agentrpc import PATH as AGENT_RPC_PATH
from secret_agent.devserver.agentrpc import AgentRPC
from secret_agent.devserver.records import (
    TOKEN_COOKIE,
    TOKEN_HEADER,
    StoredSecret,
    StoreError,
    User,
    unknown_user,
)
from secret_agent.devserver.store import Store

VERSION: Final = "v2.33.0-devserver"
MAX_BODY_BYTES: Final = 1 << 20
SIGNED_OUT: Final = (
    "You are signed out or your session has expired. Please sign in again to continue."
)
FORBIDDEN_DETAIL: Final = (
    "You don't have permission to view this content. If you believe this is a mistake,"
    " please contact your administrator or try signing in with different credentials."
)
INVALID_JSON: Final = "Request body must be valid JSON."

RequestLog = list[tuple[str, str]]

_CREATE_FIELDS: Final = {
    "name": str, "value": str, "description": str, "env_name": str, "file_path": str,
    "enabled": bool,
}  # fmt: skip
_UPDATE_FIELDS: Final = {
    "value": str, "description": str, "env_name": str, "file_path": str, "enabled": bool,
}  # fmt: skip


class JSONAnswer(Response):
    """A JSON body as coderd writes one: UTF-8, compact, newline-terminated."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def error_body(exc: StoreError) -> dict[str, object]:
    """Coder's `codersdk.Response` for a refusal; empty detail and validations omitted."""
    body: dict[str, object] = {"message": exc.message}
    if exc.detail:
        body["detail"] = exc.detail
    if exc.validations:
        body["validations"] = [{"field": v.field, "detail": v.detail} for v in exc.validations]
    return body


def secret_body(secret: StoredSecret, *, include_value: bool = False) -> dict[str, object]:
    """`codersdk.UserSecret` for one secret; the value only when asked for."""
    body: dict[str, object] = {
        "id": secret.id,
        "name": secret.name,
        "description": secret.description,
        "env_name": secret.env_name,
        "file_path": secret.file_path,
        "enabled": secret.enabled,
        "created_at": secret.created_at,
        "updated_at": secret.updated_at,
    }
    if include_value:
        body["value"] = secret.value.reveal()
    return body


class _RequestLogMiddleware:
    """Appends `(method, raw path)` for every HTTP request, before anything can fail."""

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            path = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope["path"])
            self.log.append((str(scope["method"]), path))
        await self.app(scope, receive, send)


def _go_kind(value: object) -> str:
    """The JSON kind Go's decoder names in its "cannot unmarshal" errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _go_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD, as Go's JSON decoder does."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


async def _read_fields(request: Request, struct: str, fields: dict[str, type]) -> dict[str, object]:
    """The known fields of a JSON object body; `null` and absent fields are left out.

    Unknown keys are ignored, as Go ignores them (so a PATCH `name` renames nothing).

    Raises:
        StoreError: 413 over `MAX_BODY_BYTES`; 400 for invalid JSON or a wrong type.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            detail = f"The request body must not exceed {MAX_BODY_BYTES} bytes."
            raise StoreError(status=413, message="Request body too large.", detail=detail)
        chunks.append(chunk)
    try:
        # Invalid UTF-8 becomes U+FFFD, as in Go; the error names a position, not text.
        document = json.loads(b"".join(chunks).decode("utf-8", "replace"))
    except json.JSONDecodeError as exc:
        raise StoreError(status=400, message=INVALID_JSON, detail=str(exc)) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        detail = f"json: cannot unmarshal {_go_kind(document)} into Go value of type {struct}"
        raise StoreError(status=400, message=INVALID_JSON, detail=detail)
    found: dict[str, object] = {}
    for field, kind in fields.items():
        value = document.get(field)
        if value is None:
            continue
        if not isinstance(value, kind):
            go_type = "bool" if kind is bool else "string"
            detail = (
                f"json: cannot unmarshal {_go_kind(value)} into Go struct field"
                f" {struct}.{field} of type {go_type}"
            )
            raise StoreError(status=400, message=INVALID_JSON, detail=detail)
        found[field] = _go_text(value) if isinstance(value, str) else value
    return found


def _text(fields: dict[str, object], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) else None


def _flag(fields: dict[str, object], name: str) -> bool | None:
    value = fields.get(name)
    return value if isinstance(value, bool) else None


class _Handlers:
    """The route endpoints, bound to one store."""

    def __init__(self, store: Store, *, inline_values: bool) -> None:
        self.store = store
        self.inline_values = inline_values
        self.deployment_id = str(uuid.uuid4())
        self.agent_rpc = AgentRPC(store)

    def caller(self, request: Request) -> User:
        """The user the session token belongs to.

        Raises:
            StoreError: 401, with Coder's signed-out texts, for no or an unknown token.
        """
        token = (
            request.headers.get(TOKEN_HEADER)
            or request.cookies.get(TOKEN_COOKIE)
            or request.query_params.get(TOKEN_COOKIE)
        )
        user = self.store.user_for_token(token) if token else None
        if user is None:
            raise StoreError(status=401, message=SIGNED_OUT, detail="API key is invalid.")
        return user

    def owner(self, request: Request) -> User:
        """The `{user}` of the path, once the caller is known to be that user.

        Raises:
            StoreError: 401 (no session), 400 (unknown user), 403 (someone else).
        """
        caller = self.caller(request)
        query = str(request.path_params["user"])
        target = caller if query == "me" else self.store.find_user(query)
        if target is None:
            raise unknown_user(query)
        if target.id != caller.id:
            raise StoreError(status=403, message="Forbidden.", detail=FORBIDDEN_DETAIL)
        return caller

    async def buildinfo(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONAnswer(
            {
                "external_url": base,
                "version": request.app.state.build_version,
                "dashboard_url": base,
                "telemetry": False,
                "workspace_proxy": False,
                "agent_api_version": "{}.{}".format(*self.agent_rpc.current_version),
                "upgrade_message": "",
                "deployment_id": self.deployment_id,
            }
        )

    async def secrets(self, request: Request) -> Response:
        owner = self.owner(request)
        if request.method == "POST":
            fields = await _read_fields(request, "codersdk.CreateUserSecretRequest", _CREATE_FIELDS)
            enabled = _flag(fields, "enabled")
            created = self.store.create_secret(
                owner.username,
                name=_text(fields, "name") or "",
                value=_text(fields, "value") or "",
                description=_text(fields, "description") or "",
                env_name=_text(fields, "env_name") or "",
                file_path=_text(fields, "file_path") or "",
                enabled=True if enabled is None else enabled,
            )
            return JSONAnswer(secret_body(created), status_code=201)
        return JSONAnswer([secret_body(s) for s in self.store.list_secrets(owner.username)])

    async def secret(self, request: Request) -> Response:
        owner = self.owner(request)
        name = str(request.path_params["name"])
        if request.method == "DELETE":
            self.store.delete_secret(owner.username, name)
            return Response(status_code=204)
        if request.method == "PATCH":
            fields = await _read_fields(request, "codersdk.UpdateUserSecretRequest", _UPDATE_FIELDS)
            updated = self.store.update_secret(
                owner.username,
                name,
                value=_text(fields, "value"),
                description=_text(fields, "description"),
                env_name=_text(fields, "env_name"),
                file_path=_text(fields, "file_path"),
                enabled=_flag(fields, "enabled"),
            )
            return JSONAnswer(secret_body(updated))
        found = self.store.get_secret(owner.username, name)
        return JSONAnswer(secret_body(found, include_value=self.inline_values))

    async def agent_rpc_endpoint(self, websocket: WebSocket) -> None:
        """The agent RPC: refusals are HTTP answers before the upgrade (§1.5)."""
        try:
            user = self.agent_rpc.admit(websocket)
        except StoreError as exc:
            answer = JSONAnswer(error_body(exc), status_code=exc.status)
            await websocket.send_denial_response(answer)
            return
        await self.agent_rpc.serve(websocket, user)


async def _on_store_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StoreError):
        raise exc
    return JSONAnswer(error_body(exc), status_code=exc.status)


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise exc
    message = "Route not found." if exc.status_code == 404 else exc.detail
    return JSONAnswer({"message": message}, status_code=exc.status_code, headers=exc.headers)


def create_app(store: Store, *, inline_values: bool = False) -> Starlette:
    """A Coder-compatible user-secrets API over `store`.

    `app.state.store` is the store and `app.state.request_log` the list of
    `(method, raw path)` of every HTTP request so far. With `inline_values`, the
    get-by-name answer includes `"value"`. `app.state.agent_rpc` is the agent RPC
    endpoint (`agentrpc.AgentRPC`, with its counters and test hooks), and
    `app.state.build_version` the version buildinfo reports.
    """
    handlers = _Handlers(store, inline_values=inline_values)
    request_log: RequestLog = []
    base = "/api/v2/users/{user}/secrets"
    app = Starlette(
        routes=[
            Route("/api/v2/buildinfo", handlers.buildinfo, methods=["GET"]),
            Route(base, handlers.secrets, methods=["GET", "POST"]),
            Route(base + "/{name}", handlers.secret, methods=["GET", "PATCH", "DELETE"]),
            WebSocketRoute(AGENT_RPC_PATH, handlers.agent_rpc_endpoint),
        ],
        middleware=[Middleware(_RequestLogMiddleware, log=request_log)],
        exception_handlers={StoreError: _on_store_error, HTTPException: _on_http_error},
    )
    app.state.store = store
    app.state.request_log = request_log
    app.state.inline_values = inline_values
    app.state.agent_rpc = handlers.agent_rpc
    app.state.build_version = VERSION
    return app
