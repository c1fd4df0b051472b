"""Users and their tokens (session and workspace agent), under one lock, persisted.

`Store` builds on `Accounts` and adds secrets; this half owns what every mutation
needs: the lock, the accounts, and `_mutation`, which persists a change or undoes it.
Session tokens authenticate the REST API; agent tokens (UUIDs, as Coder's) stand for
a workspace agent of the user and authenticate the agent RPC. Tokens are compared in
constant time and never appear in an error message.
"""

from __future__ import annotations

import contextlib
import hmac
import re
import secrets
import string
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from secret_agent.devserver import persist, validation
from secret_agent.devserver.records import StoredSecret, User, unknown_user

_TOKEN_ALPHABET: Final = string.ascii_letters + string.digits
# A token travels in a header, a cookie and a query string: printable ASCII, no space.
_TOKEN_SHAPE: Final = re.compile(r"[!-~]+")


@dataclass(slots=True)
class Account:
    """One user with its tokens and secrets (by name)."""

    user: User
    tokens: list[str] = field(default_factory=list)
    agent_tokens: list[str] = field(default_factory=list)
    secrets: dict[str, StoredSecret] = field(default_factory=dict)

    def copy(self) -> Account:
        return Account(
            user=self.user,
            tokens=list(self.tokens),
            agent_tokens=list(self.agent_tokens),
            secrets=dict(self.secrets),
        )


def _holder(accounts: Iterable[Account], token: str, *, agent: bool) -> User | None:
    presented = token.encode("utf-8", "replace")
    for account in accounts:
        for held in account.agent_tokens if agent else account.tokens:
            if hmac.compare_digest(held.encode(), presented):
                return account.user
    return None


class Accounts:
    """Users and their tokens; the base of `Store`.

    Args:
        persist_path: where every mutation is written (see `persist`), or None.
    """

    def __init__(self, *, persist_path: persist.StrPath | None = None) -> None:
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}
        self._depth = 0
        self._persist_path = None if persist_path is None else str(persist_path)

    @property
    def persist_path(self) -> str | None:
        """Where the store is persisted, or None."""
        return self._persist_path

    def add_user(self, username: str, *, user_id: str | None = None) -> User:
        """Create a user with no secrets; `user_id` defaults to a fresh uuid4.

        Raises:
            ValueError: the username breaks Coder's rules or is taken, or the id is
                not a UUID or is taken.
        """
        problem = validation.username_problem(username)
        if problem is not None:
            raise ValueError(f"invalid username {username!r}: {problem}")
        canonical = str(uuid.uuid4()) if user_id is None else validation.canonical_uuid(user_id)
        if canonical is None:
            raise ValueError(f"user id {user_id!r} is not a UUID")
        with self._mutation():
            if username.lower() in self._accounts:
                raise ValueError(f"user {username!r} already exists")
            if any(a.user.id == canonical for a in self._accounts.values()):
                raise ValueError(f"user id {canonical} is already taken")
            user = User(username=username, id=canonical)
            self._accounts[username.lower()] = Account(user=user)
            return user

    def users(self) -> list[User]:
        """Every user, in username order."""
        with self._lock:
            return sorted((a.user for a in self._accounts.values()), key=lambda u: u.username)

    def get_user(self, username: str) -> User | None:
        """The user with this username (case-insensitive), or None."""
        with self._lock:
            account = self._accounts.get(username.lower())
            return None if account is None else account.user

    def find_user(self, query: str) -> User | None:
        """The user `query` names, as Coder resolves `{user}`: a UUID, else a username.

        A query that parses as a UUID is looked up by id only. Usernames match
        case-insensitively. `me` is the caller's business, not the store's.
        """
        with self._lock:
            canonical = validation.canonical_uuid(query)
            if canonical is not None:
                found = (a.user for a in self._accounts.values() if a.user.id == canonical)
                return next(found, None)
            return self.get_user(query)

    def issue_token(self, username: str) -> str:
        """A new session token for the user, Coder-shaped: `<10 chars>-<24 chars>`.

        Raises:
            StoreError: no such user.
        """
        key = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(10))
        secret = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24))
        token = f"{key}-{secret}"
        self.add_token(username, token)
        return token

    def add_token(self, username: str, token: str) -> None:
        """Accept `token` as a session token of the user (idempotent).

        Raises:
            ValueError: the token is not printable ASCII without spaces, or belongs to
                another user.
            StoreError: no such user.
        """
        if not _TOKEN_SHAPE.fullmatch(token):
            raise ValueError("a token must be printable ASCII without spaces")
        with self._mutation():
            account = self._account(username)
            owner = self.user_for_token(token)
            if owner is not None and owner != account.user:
                raise ValueError("this token already belongs to another user")
            if owner is None:
                account.tokens.append(token)

    def tokens(self, username: str) -> tuple[str, ...]:
        """The user's session tokens, oldest first.

        Raises:
            StoreError: no such user.
        """
        with self._lock:
            return tuple(self._account(username).tokens)

    def revoke_token(self, token: str) -> None:
        """Stop accepting `token`; a token nobody holds is ignored."""
        with self._mutation():
            for account in self._accounts.values():
                if token in account.tokens:
                    account.tokens.remove(token)

    def user_for_token(self, token: str) -> User | None:
        """The user holding session `token`, or None. Compared in constant time."""
        with self._lock:
            return _holder(self._accounts.values(), token, agent=False)

    def issue_agent_token(self, username: str) -> str:
        """A new workspace agent token for the user: a UUID, as Coder's are.

        Raises:
            StoreError: no such user.
        """
        token = str(uuid.uuid4())
        self.add_agent_token(username, token)
        return token

    def add_agent_token(self, username: str, token: str) -> None:
        """Accept `token` as a workspace agent token of the user (idempotent).

        Raises:
            ValueError: the token is not a UUID, or belongs to another user.
            StoreError: no such user.
        """
        canonical = validation.canonical_uuid(token)
        if canonical is None:
            raise ValueError("an agent token must be a UUID")
        with self._mutation():
            account = self._account(username)
            owner = self.user_for_agent_token(canonical)
            if owner is not None and owner != account.user:
                raise ValueError("this agent token already belongs to another user")
            if owner is None:
                account.agent_tokens.append(canonical)

    def agent_tokens(self, username: str) -> tuple[str, ...]:
        """The user's workspace agent tokens, oldest first.

        Raises:
            StoreError: no such user.
        """
        with self._lock:
            return tuple(self._account(username).agent_tokens)

    def user_for_agent_token(self, token: str) -> User | None:
        """The user whose workspace holds agent `token` (any UUID spelling), or None."""
        canonical = validation.canonical_uuid(token)
        if canonical is None:
            return None
        with self._lock:
            return _holder(self._accounts.values(), canonical, agent=True)

    # -- internals ----------------------------------------------------------------

    def _account(self, username: str) -> Account:
        account = self._accounts.get(username.lower())
        if account is None:
            raise unknown_user(username)
        return account

    @contextlib.contextmanager
    def _mutation(self) -> Iterator[None]:
        """Hold the lock for a change; persist it, or undo it if anything fails.

        Nested mutations (a seed load adds users and secrets) persist once, at the
        outermost level, so a failing seed leaves neither memory nor file changed.
        """
        with self._lock:
            outermost = self._depth == 0
            snapshot = {k: a.copy() for k, a in self._accounts.items()} if outermost else None
            self._depth += 1
            try:
                yield
                if outermost and self._persist_path is not None:
                    persist.write_store_file(
                        self._persist_path,
                        persist.document(
                            persist.AccountDoc(
                                user=a.user,
                                tokens=a.tokens,
                                agent_tokens=a.agent_tokens,
                                secrets=a.secrets.values(),
                            )
                            for a in self._accounts.values()
                        ),
                    )
            except BaseException:
                if snapshot is not None:
                    self._accounts = snapshot
                raise
            finally:
                self._depth -= 1
