"""The dev server over real HTTP on loopback: Coder's API, rules, errors and persistence.

One server per module (and one with inline values) keeps the file fast; each test gets
its own user, so tests never see each other's secrets. Values are `canary-...` strings,
and an autouse fixture fails any test whose canaries reach captured output or logs.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from secret_agent.devserver import Store, StoreError, ThreadedDevServer
from secret_agent.devserver.validation import TARGET_REQUIRED_DETAIL
from secret_agent.errors import ConfigError

BASE = "/api/v2/users/{user}/secrets"
SIGNED_OUT = {
    "message": "You are signed out or your session has expired. Please sign in again to continue.",
    "detail": "API key is invalid.",
}
NOT_FOUND = {"message": "Resource not found or you do not have access to this resource"}
Canary = Callable[..., str]
METADATA_KEYS = {
    "id", "name", "description", "env_name", "file_path", "enabled", "created_at", "updated_at",
}  # fmt: skip


@dataclass
class Account:
    """A fresh user on the shared server, with a client that carries its token."""

    username: str
    id: str
    token: str
    client: httpx.Client

    def secrets_url(self, user: str = "me") -> str:
        return BASE.format(user=user)

    def secret_url(self, name: str, user: str = "me") -> str:
        return BASE.format(user=user) + "/" + quote(name, safe="")

    def create(self, **fields: object) -> httpx.Response:
        return self.client.post(self.secrets_url(), json=fields)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedDevServer]:
    with ThreadedDevServer() as running:
        yield running


@pytest.fixture(scope="module")
def inline_server() -> Iterator[ThreadedDevServer]:
    with ThreadedDevServer(inline_values=True) as running:
        yield running


@pytest.fixture
def canaries() -> list[str]:
    return []


@pytest.fixture
def canary(canaries: list[str]) -> Canary:
    """Makes a distinctive value and remembers it for the leak check."""

    def make(label: str = "") -> str:
        value = f"canary-{label}{uuid.uuid4().hex}"
        canaries.append(value)
        return value

    return make


@pytest.fixture(autouse=True)
def no_canary_in_output(
    canaries: list[str], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Fails the test when one of its canaries reached stdout, stderr or a log record."""
    yield
    out, err = capfd.readouterr()
    # At teardown `caplog.text` holds only teardown's records; the call's are kept apart.
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for phase in ("setup", "call")
        for r in caplog.get_records(phase)
    )
    for value in canaries:
        assert value not in out
        assert value not in err
        assert value not in logged


def _open_account(running: ThreadedDevServer) -> Iterator[Account]:
    user = running.store.add_user(f"u-{uuid.uuid4().hex[:12]}")
    token = running.store.issue_token(user.username)
    with httpx.Client(base_url=running.url, headers={"Coder-Session-Token": token}) as client:
        yield Account(username=user.username, id=user.id, token=token, client=client)


@pytest.fixture
def account(server: ThreadedDevServer) -> Iterator[Account]:
    yield from _open_account(server)


@pytest.fixture
def other(server: ThreadedDevServer) -> Iterator[Account]:
    yield from _open_account(server)


@pytest.fixture
def inline_account(inline_server: ThreadedDevServer) -> Iterator[Account]:
    yield from _open_account(inline_server)


def _names(account: Account) -> list[str]:
    response = account.client.get(account.secrets_url())
    assert response.status_code == 200
    return [s["name"] for s in response.json()]


# -- round trips ----------------------------------------------------------------------


def test_create_list_get_patch_delete_round_trip(account: Account, canary: Canary) -> None:
    """A secret goes through create, list, get, patch and delete with Coder's codes."""
    created = account.create(name="db", value=canary(), env_name="DB_PASSWORD")
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/json; charset=utf-8"
    body = created.json()
    assert set(body) == METADATA_KEYS
    assert body["name"] == "db"
    assert body["env_name"] == "DB_PASSWORD"
    assert body["enabled"] is True
    assert body["created_at"] == body["updated_at"]
    assert str(uuid.UUID(body["id"])) == body["id"]

    listed = account.client.get(account.secrets_url()).json()
    assert listed == [body]
    assert account.client.get(account.secret_url("db")).json() == body

    patched = account.client.patch(account.secret_url("db"), json={"description": "prod"})
    assert patched.status_code == 200
    assert patched.json()["description"] == "prod"
    assert patched.json()["id"] == body["id"]
    assert patched.json()["created_at"] == body["created_at"]

    deleted = account.client.delete(account.secret_url("db"))
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert account.client.get(account.secret_url("db")).json() == NOT_FOUND
    assert account.client.get(account.secret_url("db")).status_code == 404
    assert _names(account) == []


def test_list_is_sorted_by_name_and_never_carries_values(
    inline_account: Account, canary: Canary
) -> None:
    """The list is in name order and has no value, even with inline values on."""
    for name in ["zeta", "Alpha", "beta"]:
        assert inline_account.create(name=name, value=canary(), file_path=f"~/{name}").is_success
    listed = inline_account.client.get(inline_account.secrets_url()).json()
    assert [s["name"] for s in listed] == ["Alpha", "beta", "zeta"]
    assert all(set(s) == METADATA_KEYS for s in listed)


def test_inline_values_appear_only_on_get_by_name(inline_account: Account, canary: Canary) -> None:
    """With inline values, get-by-name carries the value; create and patch do not."""
    value = canary()
    created = inline_account.create(name="token", value=value, env_name="API_TOKEN")
    assert "value" not in created.json()
    assert inline_account.client.get(inline_account.secret_url("token")).json()["value"] == value
    rotated = canary("rotated-")
    patched = inline_account.client.patch(
        inline_account.secret_url("token"), json={"value": rotated}
    )
    assert "value" not in patched.json()
    assert inline_account.client.get(inline_account.secret_url("token")).json()["value"] == rotated


def test_without_inline_values_get_by_name_has_no_value(account: Account, canary: Canary) -> None:
    """Like Coder, the default server never returns a value."""
    value = canary()
    account.create(name="token", value=value, env_name="API_TOKEN")
    response = account.client.get(account.secret_url("token"))
    assert set(response.json()) == METADATA_KEYS
    assert value not in response.text


@pytest.mark.parametrize(
    "name",
    ["my secret", "100% done", "naïve ünïcode", "a+b=c", "semi;colon", "dots..."],
    ids=["space", "percent", "unicode", "plus-equals", "semicolon", "dots"],
)
def test_url_encoded_names_round_trip(account: Account, canary: Canary, name: str) -> None:
    """Names with spaces and other URL-special characters work percent-encoded."""
    assert account.create(name=name, value=canary(), env_name="X_SECRET").status_code == 201
    fetched = account.client.get(account.secret_url(name))
    assert fetched.status_code == 200
    assert fetched.json()["name"] == name
    assert account.client.delete(account.secret_url(name)).status_code == 204
    assert _names(account) == []


def test_secret_repr_never_shows_the_value(
    account: Account, server: ThreadedDevServer, canary: Canary
) -> None:
    """A StoredSecret and the store print `[redacted]` where the value would be."""
    value = canary()
    account.create(name="k", value=value, env_name="K_VALUE")
    stored = server.store.get_secret(account.username, "k")
    assert value not in repr(stored)
    assert value not in repr(server.store.list_secrets(account.username))
    assert stored.value.reveal() == value


# -- validation -------------------------------------------------------------------------

CODER_RESERVED = "environment variable names starting with CODER_ are reserved for internal use"
BAD_ENV_SHAPE = (
    "must start with a letter or underscore, followed by letters, digits, or underscores"
)

HOSTILE_CREATES = [
    ("reserved-PATH", {"env_name": "PATH"}, "env_name", "PATH is a reserved environment variable name"),
    ("reserved-lowercase", {"env_name": "path"}, "env_name", "PATH is a reserved environment variable name"),
    ("reserved-mixed-case", {"env_name": "Home"}, "env_name", "HOME is a reserved environment variable name"),
    ("reserved-bash-env", {"env_name": "BASH_ENV"}, "env_name", "BASH_ENV is a reserved environment variable name"),
    ("coder-exact", {"env_name": "CODER"}, "env_name", CODER_RESERVED),
    ("coder-prefix", {"env_name": "CODER_X"}, "env_name", CODER_RESERVED),
    ("coder-lowercase", {"env_name": "coder_agent_token"}, "env_name", CODER_RESERVED),
    ("ld-preload", {"env_name": "LD_PRELOAD"}, "env_name", "environment variables starting with LD_ are reserved"),
    ("ld-lowercase", {"env_name": "ld_library_path"}, "env_name", "environment variables starting with LD_ are reserved"),
    ("dyld", {"env_name": "DYLD_INSERT_LIBRARIES"}, "env_name", "environment variables starting with DYLD_ are reserved"),
    ("git", {"env_name": "GIT_ASKPASS"}, "env_name", "environment variables starting with GIT_ are reserved"),
    ("lc", {"env_name": "LC_ALL"}, "env_name", "environment variables starting with LC_ are reserved"),
    ("env-leading-digit", {"env_name": "1TOKEN"}, "env_name", BAD_ENV_SHAPE),
    ("env-dash", {"env_name": "MY-TOKEN"}, "env_name", BAD_ENV_SHAPE),
    ("env-trailing-newline", {"env_name": "TOKEN\n"}, "env_name", BAD_ENV_SHAPE),
    ("env-newline-injection", {"env_name": "X\nEVIL=1"}, "env_name", BAD_ENV_SHAPE),
    ("env-too-long", {"env_name": "A" * 257}, "env_name", "environment variable name must not exceed 256 bytes"),
    ("value-empty", {"value": ""}, "value", "Value is required."),
    ("value-nul", {"value": "canary-nul\x00tail"}, "value", "secret value must not contain null bytes"),
    ("value-oversize", {"value": "v" * (24 * 1024 + 1)}, "value", "secret value must not exceed 24576 bytes"),
    ("value-oversize-utf8", {"value": "é" * 12289}, "value", "secret value must not exceed 24576 bytes"),
    ("path-relative", {"file_path": "relative/x"}, "file_path", "file path must start with ~/ or /"),
    ("path-tilde-user", {"file_path": "~root/x"}, "file_path", "file path must start with ~/ or /"),
    ("path-nul", {"file_path": "/tmp/a\x00b"}, "file_path", "file path must not contain null bytes"),
    ("path-too-long", {"file_path": "/" + "a" * 4096}, "file_path", "file path must not exceed 4096 bytes"),
    ("name-empty", {"name": ""}, "name", "Name is required."),
    ("name-blank", {"name": " \t"}, "name", "Name is required."),
    ("name-leading-space", {"name": " db"}, "name", "Name must not have leading or trailing whitespace."),
    ("name-slash", {"name": "a/b"}, "name", "Name must not contain /, ?, or #."),
    ("name-question", {"name": "a?b"}, "name", "Name must not contain /, ?, or #."),
    ("name-hash", {"name": "a#b"}, "name", "Name must not contain /, ?, or #."),
    ("no-target", {"env_name": "", "file_path": ""}, "env_name", TARGET_REQUIRED_DETAIL),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "field", "detail"),
    [row[1:] for row in HOSTILE_CREATES],
    ids=[row[0] for row in HOSTILE_CREATES],
)
def test_create_refuses_what_coder_refuses(
    account: Account, overrides: dict[str, str], field: str, detail: str
) -> None:
    """Each hostile create gets Coder's 400 naming the field, and creates nothing."""
    fields = {"name": "s", "value": "canary-valid", "env_name": "GOOD_NAME", **overrides}
    response = account.create(**fields)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Validation failed.",
        "validations": [{"field": field, "detail": detail}],
    }
    assert _names(account) == []


ACCEPTED_CREATES = [
    ("value-at-limit", {"value": "v" * (24 * 1024)}),
    ("env-at-limit", {"env_name": "A" * 256}),
    ("path-at-limit", {"file_path": "/" + "a" * 4095}),
    ("path-etc", {"file_path": "/etc/x", "env_name": ""}),
    ("path-dotdot", {"file_path": "~/../x", "env_name": ""}),
    ("coder-without-underscore", {"env_name": "CODERX"}),
    ("git-without-underscore", {"env_name": "GIT"}),
    ("underscore-start", {"env_name": "_private"}),
    ("disabled-without-target", {"env_name": "", "enabled": False}),
    ("name-inner-space", {"name": "my db"}),
]


@pytest.mark.parametrize(
    "overrides", [row[1] for row in ACCEPTED_CREATES], ids=[row[0] for row in ACCEPTED_CREATES]
)
def test_create_accepts_the_edges_coder_accepts(
    account: Account, overrides: dict[str, object]
) -> None:
    """Boundary values Coder allows are created."""
    fields = {"name": "s", "value": "canary-valid", "env_name": "GOOD_NAME", **overrides}
    response = account.create(**fields)
    assert response.status_code == 201, response.text
    assert _names(account) == [fields["name"]]


def test_create_reports_every_bad_field_at_once(account: Account) -> None:
    """Several bad fields give one 400 listing each, in Coder's order."""
    response = account.create(name="a/b", value="", env_name="PATH", file_path="x")
    assert response.json()["validations"] == [
        {"field": "name", "detail": "Name must not contain /, ?, or #."},
        {"field": "value", "detail": "Value is required."},
        {"field": "env_name", "detail": "PATH is a reserved environment variable name"},
        {"field": "file_path", "detail": "file path must start with ~/ or /"},
    ]


@pytest.mark.parametrize(
    ("second", "field", "detail"),
    [
        ({"name": "one", "env_name": "TWO_ENV"}, "name", "name already in use"),
        ({"name": "two", "env_name": "ONE_ENV"}, "env_name", "environment variable already in use"),
        ({"name": "two", "file_path": "~/one"}, "file_path", "file path already in use"),
    ],
    ids=["duplicate-name", "duplicate-env-name", "duplicate-file-path"],
)
def test_duplicates_conflict_with_409_naming_the_field(
    account: Account, canary: Canary, second: dict[str, str], field: str, detail: str
) -> None:
    """A second secret with a used name, env_name or file_path gets Coder's 409."""
    assert account.create(
        name="one", value=canary(), env_name="ONE_ENV", file_path="~/one"
    ).is_success
    response = account.create(value=canary(), **second)
    assert response.status_code == 409
    assert response.json() == {
        "message": "Validation failed.",
        "validations": [{"field": field, "detail": detail}],
    }
    assert _names(account) == ["one"]


def test_empty_targets_never_conflict_and_env_names_are_case_sensitive(
    account: Account, canary: Canary
) -> None:
    """Two file-only secrets share the empty env_name; TOKEN and token are distinct."""
    assert account.create(name="a", value=canary(), file_path="~/a").status_code == 201
    assert account.create(name="b", value=canary(), file_path="~/b").status_code == 201
    assert account.create(name="c", value=canary(), env_name="TOKEN").status_code == 201
    assert account.create(name="d", value=canary(), env_name="token").status_code == 201


def test_the_51st_secret_hits_the_count_limit(
    account: Account, server: ThreadedDevServer, canary: Canary
) -> None:
    """A user holds at most 50 secrets; the 51st gets Coder's 400 limit message."""
    for i in range(50):
        server.store.create_secret(
            account.username, name=f"s{i:02}", value=canary(), file_path=f"~/{i}"
        )
    response = account.create(name="s50", value=canary(), file_path="~/50")
    assert response.status_code == 400
    assert response.json() == {
        "message": "User secrets limit reached.",
        "detail": "Each user can have at most 50 secrets.",
    }
    assert len(_names(account)) == 50


def test_total_value_bytes_are_capped_at_200_kib(account: Account) -> None:
    """Nine 24 KiB file secrets exceed the 200 KiB per-user value budget."""
    big = "canary-" + "b" * (24 * 1024 - 7)
    for i in range(8):
        assert account.create(name=f"f{i}", value=big, file_path=f"~/f{i}").status_code == 201
    response = account.create(name="f8", value=big, file_path="~/f8")
    assert response.status_code == 400
    assert response.json()["message"] == "User secrets value-bytes limit reached."
    assert "204800 bytes" in response.json()["detail"]


def test_env_injected_bytes_are_capped_at_24_kib_on_create_and_patch(account: Account) -> None:
    """Env-injected values share a 24 KiB budget; moving one into env is checked too."""
    half = "canary-" + "h" * (12 * 1024 - 7)
    assert account.create(name="e1", value=half, env_name="E1").status_code == 201
    assert account.create(name="e2", value=half + "x", env_name="E2").json()["message"] == (
        "Environment-injected user secrets bytes limit reached."
    )
    assert account.create(name="f1", value=half + "x", file_path="~/f1").status_code == 201
    response = account.client.patch(account.secret_url("f1"), json={"env_name": "F1"})
    assert response.status_code == 400
    assert response.json()["message"] == "Environment-injected user secrets bytes limit reached."
    assert account.client.get(account.secret_url("f1")).json()["env_name"] == ""


# -- PATCH semantics ----------------------------------------------------------------


def test_patch_with_no_fields_is_refused(account: Account, canary: Canary) -> None:
    """An empty PATCH, or one with only nulls or a name, gets Coder's 400."""
    account.create(name="s", value=canary(), env_name="S_ENV")
    for body in [{}, {"value": None, "env_name": None}, {"name": "renamed"}]:
        response = account.client.patch(account.secret_url("s"), json=body)
        assert response.status_code == 400
        assert response.json() == {"message": "At least one field must be provided."}
    assert _names(account) == ["s"]


def test_patch_null_keeps_empty_string_clears_and_name_never_changes(
    account: Account, canary: Canary
) -> None:
    """null leaves a field alone, "" clears it, and a `name` in the body is ignored."""
    account.create(name="s", value=canary(), env_name="S_ENV", file_path="~/s", description="d")
    response = account.client.patch(
        account.secret_url("s"),
        json={"name": "renamed", "description": "", "env_name": None, "file_path": ""},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["env_name"], body["file_path"]) == (
        "s", "", "S_ENV", "",
    )  # fmt: skip
    assert _names(account) == ["s"]


def test_patch_cannot_leave_an_enabled_secret_without_target(
    account: Account, canary: Canary
) -> None:
    """Clearing the only target of an enabled secret is refused; disabling it too is not."""
    account.create(name="s", value=canary(), env_name="S_ENV")
    refused = account.client.patch(account.secret_url("s"), json={"env_name": ""})
    assert refused.status_code == 400
    assert refused.json()["validations"] == [
        {"field": "env_name", "detail": TARGET_REQUIRED_DETAIL}
    ]
    accepted = account.client.patch(
        account.secret_url("s"), json={"env_name": "", "enabled": False}
    )
    assert accepted.status_code == 200
    assert (accepted.json()["env_name"], accepted.json()["enabled"]) == ("", False)


def test_patch_validates_fields_and_conflicts(account: Account, canary: Canary) -> None:
    """PATCH applies the field rules and uniqueness, but accepts an empty value."""
    account.create(name="a", value=canary(), env_name="A_ENV")
    account.create(name="b", value=canary(), env_name="B_ENV")
    bad = account.client.patch(account.secret_url("b"), json={"env_name": "LD_PRELOAD"})
    assert bad.json()["validations"][0]["field"] == "env_name"
    conflict = account.client.patch(account.secret_url("b"), json={"env_name": "A_ENV"})
    assert conflict.status_code == 409
    assert conflict.json()["validations"] == [
        {"field": "env_name", "detail": "environment variable already in use"}
    ]
    assert account.client.patch(account.secret_url("b"), json={"value": ""}).status_code == 200


def test_unknown_secret_is_404_for_get_patch_and_delete(account: Account) -> None:
    """Every by-name verb answers Coder's vague 404 for a missing secret."""
    url = account.secret_url("missing")
    for response in [
        account.client.get(url),
        account.client.patch(url, json={"description": "x"}),
        account.client.delete(url),
    ]:
        assert response.status_code == 404
        assert response.json() == NOT_FOUND


def test_updated_at_strictly_increases_on_every_update(account: Account, canary: Canary) -> None:
    """Back-to-back PATCHes each get a later updated_at; created_at never moves."""
    created = account.create(name="s", value=canary(), env_name="S_ENV").json()
    stamps = [created["updated_at"]]
    for _ in range(20):
        body = account.client.patch(account.secret_url("s"), json={"value": canary()}).json()
        assert body["created_at"] == created["created_at"]
        stamps.append(body["updated_at"])
    parsed = [datetime.fromisoformat(s) for s in stamps]
    assert all(a < b for a, b in itertools.pairwise(parsed))
    assert all(s.endswith("Z") and "." in s for s in stamps)


def test_updated_at_increases_even_when_the_clock_stands_still(canary: Canary) -> None:
    """With a frozen clock, each write still gets a strictly later stamp."""
    frozen = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    store = Store(clock=lambda: frozen)
    store.add_user("developer")
    stamps = [store.create_secret("developer", name="s", value=canary(), env_name="S").updated_at]
    for _ in range(3):
        stamps.append(store.update_secret("developer", "s", description="again").updated_at)
    assert stamps == [
        "2030-01-02T03:04:05.000000Z",
        "2030-01-02T03:04:05.000001Z",
        "2030-01-02T03:04:05.000002Z",
        "2030-01-02T03:04:05.000003Z",
    ]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (b"[]", "json: cannot unmarshal array into Go value of type codersdk.CreateUserSecretRequest"),
        (b'{"name": 5}', "json: cannot unmarshal number into Go struct field codersdk.CreateUserSecretRequest.name of type string"),
        (b'{"enabled": "yes"}', "json: cannot unmarshal string into Go struct field codersdk.CreateUserSecretRequest.enabled of type bool"),
    ],
    ids=["truncated", "array", "number-for-string", "string-for-bool"],
)  # fmt: skip
def test_invalid_json_bodies_get_400(account: Account, body: bytes, detail: str) -> None:
    """A body Go's decoder would refuse gets Coder's "must be valid JSON" 400."""
    response = account.client.post(account.secrets_url(), content=body)
    assert response.status_code == 400
    assert response.json() == {"message": "Request body must be valid JSON.", "detail": detail}


# -- auth and users --------------------------------------------------------------------


def test_missing_or_wrong_token_gets_401(server: ThreadedDevServer, account: Account) -> None:
    """No token, an unknown token and a revoked token all get Coder's signed-out 401."""
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get(BASE.format(user="me")).status_code == 401
        assert anonymous.get(BASE.format(user="me")).json() == SIGNED_OUT
        wrong = anonymous.get(BASE.format(user="me"), headers={"Coder-Session-Token": "x-y"})
        assert (wrong.status_code, wrong.json()) == (401, SIGNED_OUT)
        assert anonymous.get("/api/v2/buildinfo").json()["version"] == "v2.33.0-devserver"
    server.store.revoke_token(account.token)
    revoked = account.client.get(account.secrets_url())
    assert (revoked.status_code, revoked.json()) == (401, SIGNED_OUT)


def test_token_is_also_accepted_as_cookie_and_query(
    server: ThreadedDevServer, account: Account
) -> None:
    """The session token works from the coder_session_token cookie and query parameter."""
    with httpx.Client(base_url=server.url, cookies={"coder_session_token": account.token}) as c:
        assert c.get(BASE.format(user="me")).status_code == 200
    with httpx.Client(base_url=server.url) as c:
        url = BASE.format(user="me")
        assert c.get(url, params={"coder_session_token": account.token}).status_code == 200


def test_me_username_and_uuid_name_the_same_user(account: Account, canary: Canary) -> None:
    """`me`, the username (any case) and the UUID (any case) resolve to the caller."""
    account.create(name="s", value=canary(), env_name="S_ENV")
    for user in ["me", account.username, account.username.upper(), account.id, account.id.upper()]:
        response = account.client.get(account.secrets_url(user))
        assert response.status_code == 200, user
        assert [s["name"] for s in response.json()] == ["s"]


def test_unknown_user_gets_400(account: Account) -> None:
    """A `{user}` that is no username or UUID gets Coder's 400 quoting the query."""
    for query in ["nobody", str(uuid.uuid4())]:
        response = account.client.get(account.secrets_url(query))
        assert response.status_code == 400
        assert response.json() == {
            "message": '"user" must be an existing uuid or username.',
            "detail": f'queried user="{query}"',
        }


def test_another_users_secrets_are_forbidden(
    account: Account, other: Account, canary: Canary
) -> None:
    """A token cannot read or write someone else's secrets, by username or by UUID."""
    other.create(name="theirs", value=canary(), env_name="THEIRS")
    for user in [other.username, other.id]:
        listed = account.client.get(account.secrets_url(user))
        assert listed.status_code == 403
        assert listed.json()["message"] == "Forbidden."
        created = account.client.post(
            account.secrets_url(user), json={"name": "mine", "value": canary(), "env_name": "M"}
        )
        assert created.status_code == 403
        assert account.client.delete(account.secret_url("theirs", user)).status_code == 403
    assert _names(other) == ["theirs"]


# -- request log -------------------------------------------------------------------------


def test_request_log_records_each_request_without_query(
    server: ThreadedDevServer, account: Account
) -> None:
    """Each request adds exactly one (method, raw path) entry; the query is left out."""
    before = len(server.request_log)
    account.client.get(account.secrets_url(), params={"coder_session_token": account.token})
    account.client.get(account.secret_url("with space"))
    assert server.request_log[before:] == [
        ("GET", "/api/v2/users/me/secrets"),
        ("GET", "/api/v2/users/me/secrets/with%20space"),
    ]


# -- seed files ------------------------------------------------------------------------


def _seed(tmp_path: Path, document: object, name: str = "seed.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_seed_file_loads_users_tokens_and_secrets(tmp_path: Path, canary: Canary) -> None:
    """A seeded store serves the seeded secrets to the seeded token, values inline."""
    value = canary()
    user_id = str(uuid.uuid4())
    seed = _seed(
        tmp_path,
        {
            "users": [
                {
                    "username": "developer",
                    "id": user_id,
                    "tokens": ["AbCdEfGhIj-0123456789abcdefghijklmn"],
                    "secrets": [
                        {"name": "b", "value": value, "env_name": "B_TOKEN"},
                        {
                            "name": "a",
                            "value": canary(),
                            "file_path": "~/.a",
                            "enabled": False,
                            "description": "seeded",
                            "created_at": "2024-01-01T00:00:00Z",
                            "updated_at": "2024-02-01T00:00:00.5+00:00",
                        },
                    ],
                }
            ]
        },
    )
    store = Store.from_seed(seed)
    with (
        ThreadedDevServer(store, inline_values=True) as running,
        httpx.Client(
            base_url=running.url,
            headers={"Coder-Session-Token": "AbCdEfGhIj-0123456789abcdefghijklmn"},
        ) as client,
    ):
        listed = client.get(BASE.format(user=user_id)).json()
        assert [s["name"] for s in listed] == ["a", "b"]
        assert listed[0]["updated_at"] == "2024-02-01T00:00:00.500000Z"
        assert (listed[0]["enabled"], listed[0]["description"]) == (False, "seeded")
        assert client.get(BASE.format(user="me") + "/b").json()["value"] == value
        # A write after loading sorts after every loaded stamp.
        patched = client.patch(BASE.format(user="me") + "/a", json={"description": "x"}).json()
        assert patched["updated_at"] > listed[0]["updated_at"]


BAD_SEEDS = [
    ("not-json", "{oops", "", "not valid JSON"),
    ("top-level-list", [], "", "must be a JSON object"),
    ("unknown-top-key", {"user": []}, "", "unknown key 'user'"),
    ("users-not-list", {"users": {}}, "users", "must be a list"),
    ("missing-username", {"users": [{}]}, "users[0]", "missing required key 'username'"),
    ("bad-username", {"users": [{"username": "no spaces"}]}, "users[0]", "invalid username"),
    ("bad-user-id", {"users": [{"username": "dev", "id": "42"}]}, "users[0]", "is not a UUID"),
    ("duplicate-user", {"users": [{"username": "dev"}, {"username": "DEV"}]}, "users[1]", "already exists"),
    ("token-not-string", {"users": [{"username": "dev", "tokens": [1]}]}, "users[0].tokens[0]", "must be a string"),
    ("secret-missing-value", {"users": [{"username": "dev", "secrets": [{"name": "s"}]}]}, "users[0].secrets[0]", "missing required key 'value'"),
    ("secret-unknown-key", {"users": [{"username": "dev", "secrets": [{"name": "s", "value": "canary-seed", "env": "X"}]}]}, "users[0].secrets[0]", "unknown key 'env'"),
    ("secret-enabled-not-bool", {"users": [{"username": "dev", "secrets": [{"name": "s", "value": "canary-seed", "env_name": "S", "enabled": "yes"}]}]}, "users[0].secrets[0].enabled", "must be true or false"),
    ("secret-bad-stamp", {"users": [{"username": "dev", "secrets": [{"name": "s", "value": "canary-seed", "env_name": "S", "updated_at": "yesterday"}]}]}, "users[0].secrets[0].updated_at", "must be an RFC3339 time"),
    ("secret-reserved-env", {"users": [{"username": "dev", "secrets": [{"name": "s", "value": "canary-seed", "env_name": "PATH"}]}]}, "users[0].secrets[0] ('s')", "PATH is a reserved environment variable name"),
    ("secret-duplicate-env", {"users": [{"username": "dev", "secrets": [{"name": "a", "value": "canary-seed", "env_name": "S"}, {"name": "b", "value": "canary-seed", "env_name": "S"}]}]}, "users[0].secrets[1] ('b')", "environment variable already in use"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("document", "key", "problem"),
    [row[1:] for row in BAD_SEEDS],
    ids=[row[0] for row in BAD_SEEDS],
)
def test_bad_seed_file_names_the_file_and_the_problem(
    tmp_path: Path, document: object, key: str, problem: str
) -> None:
    """A bad seed raises ConfigError naming the file, the key and what is wrong."""
    path = tmp_path / "seed.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    store = Store()
    with pytest.raises(ConfigError) as caught:
        store.load_seed(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert f": {key}: " in message if key else True
    assert caught.value.key == (key or None)
    assert problem in message
    assert "canary-seed" not in message
    assert store.users() == []  # all or nothing


def test_missing_seed_file_is_a_config_error(tmp_path: Path) -> None:
    """A seed path that does not exist is reported by name."""
    with pytest.raises(ConfigError, match="no such file"):
        Store.from_seed(tmp_path / "absent.json")


# -- persistence -------------------------------------------------------------------------


def test_store_persists_across_instances(tmp_path: Path, canary: Canary) -> None:
    """A second store on the same file sees the users, tokens, secrets and stamps."""
    path = tmp_path / "state" / "devserver.json"
    path.parent.mkdir()
    first = Store(persist_path=path)
    user = first.add_user("developer")
    token = first.issue_token("developer")
    value = canary()
    created = first.create_secret("developer", name="s", value=value, env_name="S_ENV")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["devserver.json"]  # no temp file left behind

    second = Store(persist_path=path)
    assert second.user_for_token(token) == user
    again = second.get_secret("developer", "s")
    assert again == created
    assert again.value.reveal() == value
    updated = second.update_secret("developer", "s", value=canary())
    assert updated.updated_at > created.updated_at
    assert Store(persist_path=path).get_secret("developer", "s") == updated


def test_failed_persist_leaves_the_store_unchanged(tmp_path: Path) -> None:
    """When the file cannot be written, the mutation is undone and the error raised."""
    store = Store(persist_path=tmp_path / "missing-dir" / "devserver.json")
    with pytest.raises(FileNotFoundError):
        store.add_user("developer")
    assert store.users() == []


def test_store_errors_carry_coders_shape(canary: Canary) -> None:
    """Direct store calls raise StoreError with status, message and validations."""
    store = Store()
    store.add_user("developer")
    with pytest.raises(StoreError) as caught:
        store.create_secret("developer", name="s", value=canary(), env_name="PATH")
    assert caught.value.status == 400
    assert caught.value.message == "Validation failed."
    assert [(v.field, v.detail) for v in caught.value.validations] == [
        ("env_name", "PATH is a reserved environment variable name")
    ]


def test_concurrent_creates_from_many_threads_all_land(
    account: Account, server: ThreadedDevServer, canary: Canary
) -> None:
    """Creates racing over HTTP and directly on the store are all kept, none lost."""
    values = [canary() for _ in range(16)]
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            if i % 2:
                server.store.create_secret(
                    account.username, name=f"s{i:02}", value=values[i], env_name=f"S{i}"
                )
            else:
                with httpx.Client(
                    base_url=server.url, headers={"Coder-Session-Token": account.token}
                ) as c:
                    response = c.post(
                        account.secrets_url(),
                        json={"name": f"s{i:02}", "value": values[i], "env_name": f"S{i}"},
                    )
                    assert response.status_code == 201
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert _names(account) == [f"s{i:02}" for i in range(16)]


def test_stopped_server_refuses_connections() -> None:
    """After the context exits, the port no longer answers."""
    with ThreadedDevServer() as running:
        url = running.url
        assert httpx.get(url + "/api/v2/buildinfo").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/api/v2/buildinfo", timeout=2)
