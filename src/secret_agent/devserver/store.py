"""In-memory users, tokens and secrets: the state behind the dev server.

The store enforces Coder's rules (see `validation`) and answers refusals with
`StoreError`, which carries Coder's status, message, detail and validations so the app
can send Coder's error body unchanged. It is thread-safe: uvicorn serves from one thread
while tests and tools mutate the store from another. With a `persist_path`, the whole
store is written atomically after every mutation and read back at start.

Values live in `Secret`, so a repr of a `StoredSecret` or of the store shows none. The
store knows nothing of HTTP; it must not import starlette or uvicorn.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final

from secret_agent.devserver import persist, validation
from secret_agent.devserver.accounts import Account, Accounts
from secret_agent.devserver.records import StoredSecret, StoreError, not_found, refused
from secret_agent.errors import ConfigError, Validation
from secret_agent.redact import Secret

Clock = Callable[[], datetime]

_TICK: Final = timedelta(microseconds=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store(Accounts):
    """Users, their session and agent tokens (see `Accounts`) and their secrets.

    Args:
        persist_path: a JSON file (see `persist`) loaded at start if it exists and
            rewritten atomically after every mutation.
        clock: the source of `created_at`/`updated_at`; stamps are forced strictly
            increasing, so even a clock that stands still gives each write a new one.

    Raises:
        ConfigError: the persist file exists but cannot be loaded.
    """

    def __init__(
        self,
        *,
        persist_path: persist.StrPath | None = None,
        clock: Clock = _utcnow,
        limits: validation.Limits = validation.CODER_LIMITS,
    ) -> None:
        super().__init__(persist_path=persist_path)
        self._limits = limits
        self._last_stamp: datetime | None = None
        self._clock = clock
        if self._persist_path is not None:
            self._load(self._persist_path, missing_ok=True)

    @classmethod
    def from_seed(
        cls, path: persist.StrPath, *, persist_path: persist.StrPath | None = None
    ) -> Store:
        """A store holding what the seed file at `path` describes.

        Raises:
            ConfigError: the seed is unreadable, malformed or breaks Coder's rules.
        """
        store = cls(persist_path=persist_path)
        store.load_seed(path)
        return store

    def load_seed(self, path: persist.StrPath) -> None:
        """Add the users, tokens and secrets the seed file at `path` describes.

        All or nothing: on any error the store is left as it was.

        Raises:
            ConfigError: naming the file and the key, for an unreadable or malformed
                file, a duplicate user or token, or a secret Coder would refuse.
        """
        self._load(str(path), missing_ok=False)

    # -- secrets ------------------------------------------------------------------

    def create_secret(
        self,
        username: str,
        *,
        name: str,
        value: str,
        description: str = "",
        env_name: str = "",
        file_path: str = "",
        enabled: bool = True,
    ) -> StoredSecret:
        """Create a secret as Coder's POST does.

        Raises:
            StoreError: 400 for a field Coder refuses or a per-user cap; 409 when the
                name, env_name or file_path is already used by another secret.
        """
        with self._mutation():
            return self._create(
                self._account(username),
                persist.SeedSecret(
                    name=name,
                    value=Secret(value),
                    description=description,
                    env_name=env_name,
                    file_path=file_path,
                    enabled=enabled,
                ),
            )

    def update_secret(
        self,
        username: str,
        name: str,
        *,
        value: str | None = None,
        description: str | None = None,
        env_name: str | None = None,
        file_path: str | None = None,
        enabled: bool | None = None,
    ) -> StoredSecret:
        """Change the fields given (None = unchanged, "" = clear), as Coder's PATCH does.

        There is no renaming. Every successful update gets a new `updated_at`, even one
        that changes nothing.

        Raises:
            StoreError: 400 with no field given, a field Coder refuses, an enabled
                secret left without a target, or a per-user cap; 404 for an unknown
                secret; 409 when env_name or file_path is used by another secret.
        """
        with self._mutation():
            account = self._account(username)
            new = validation.patched(
                account.secrets.get(name),
                value=value,
                description=description,
                env_name=env_name,
                file_path=file_path,
                enabled=enabled,
            )
            others = [s for s in account.secrets.values() if s.id != new.id]
            validation.check_limits(others, new, self._limits)
            validation.check_unique(others, new)
            new = replace(new, updated_at=persist.format_stamp(self._stamp()))
            account.secrets[name] = new
            return new

    def delete_secret(self, username: str, name: str) -> None:
        """Delete a secret.

        Raises:
            StoreError: 404 for an unknown secret, 400 for an unknown user.
        """
        with self._mutation():
            if self._account(username).secrets.pop(name, None) is None:
                raise not_found()

    def get_secret(self, username: str, name: str) -> StoredSecret:
        """One secret by exact name.

        Raises:
            StoreError: 404 for an unknown secret, 400 for an unknown user.
        """
        with self._lock:
            found = self._account(username).secrets.get(name)
        if found is None:
            raise not_found()
        return found

    def list_secrets(self, username: str) -> list[StoredSecret]:
        """The user's secrets in name order (code-point order).

        Raises:
            StoreError: 400 for an unknown user.
        """
        with self._lock:
            return sorted(self._account(username).secrets.values(), key=lambda s: s.name)

    # -- internals ----------------------------------------------------------------

    def _stamp(self) -> datetime:
        now = self._clock().astimezone(UTC)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + _TICK
        self._last_stamp = now
        return now

    def _observe(self, moment: datetime) -> datetime:
        # Loaded stamps count as issued, so later writes still sort after them.
        if self._last_stamp is None or moment > self._last_stamp:
            self._last_stamp = moment
        return moment

    def _create(
        self, account: Account, seed: persist.SeedSecret, *, restore: bool = False
    ) -> StoredSecret:
        problems = validation.validate_create(
            name=seed.name,
            value=seed.value.reveal(),
            env_name=seed.env_name,
            file_path=seed.file_path,
            enabled=seed.enabled,
        )
        if problems:
            raise refused(400, problems)
        secret_id = str(uuid.uuid4()) if seed.id is None else validation.canonical_uuid(seed.id)
        if secret_id is None:
            raise refused(400, [Validation("id", "must be a UUID")])
        now = self._stamp()
        created = self._observe(seed.created_at) if restore and seed.created_at else now
        updated = self._observe(seed.updated_at) if restore and seed.updated_at else now
        secret = StoredSecret(
            id=secret_id,
            name=seed.name,
            value=seed.value,
            description=seed.description,
            env_name=seed.env_name,
            file_path=seed.file_path,
            enabled=seed.enabled,
            created_at=persist.format_stamp(created),
            updated_at=persist.format_stamp(updated),
        )
        others = list(account.secrets.values())
        validation.check_limits(others, secret, self._limits)
        validation.check_unique(others, secret)
        account.secrets[secret.name] = secret
        return secret

    def _load(self, path: str, *, missing_ok: bool) -> None:
        seeds = persist.read_store_file(path, missing_ok=missing_ok)
        if not seeds:
            return
        with self._mutation():
            for i, seed in enumerate(seeds):
                key = f"users[{i}]"
                try:
                    user = self.add_user(seed.username, user_id=seed.id)
                    for token in seed.tokens:
                        self.add_token(user.username, token)
                    for token in seed.agent_tokens:
                        self.add_agent_token(user.username, token)
                except (ValueError, StoreError) as exc:
                    raise ConfigError(str(exc), key=key, file=path) from None
                account = self._account(user.username)
                for j, secret in enumerate(seed.secrets):
                    try:
                        self._create(account, secret, restore=True)
                    except StoreError as exc:
                        where = f"{key}.secrets[{j}] ({secret.name!r})"
                        raise ConfigError(str(exc), key=where, file=path) from None
