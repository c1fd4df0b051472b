"""Where secret values come from: `values.source` = inline | agent | auto.

Coder's REST API gives metadata only; a value comes either inline in the get-by-name
answer (the dev server with `--inline-values`) or from the workspace agent RPC's
`GetManifest`, which carries every enabled secret's env_name, file_path and value
but not its name. A `ValueSource` hides which: given the metadata of the secrets whose
values are needed, it returns each one's (possibly newer) metadata and value, and
leaves out secrets that vanished meanwhile (a 404 between list and get, or a secret
missing from the manifest, is a deletion).

- `inline`: one get per secret; a get without a value is an error. A get that fails
  for that secret alone (a bad body, an error status, a timeout; not a rejected
  token or a rate limit, which concern every secret) fails that secret only: it is
  reported in `Fetched.failed` and the pass goes on with the others.
- `agent`: one `GetManifest` for all the secrets of a pass, joined to the metadata by
  `env_name` or `file_path` (`join_manifest`).
- `auto`: inline where the get carries a value; the rest from one `GetManifest` when
  an agent token is available; else an error naming both ways.
- With no session token there is no metadata at all: the manifest alone is the
  desired state (`manifest_secrets`), with names made up from the targets.

Every value is registered with `redact.known_values` the moment it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

from secret_agent.coder import CoderClient, ManifestSecret
from secret_agent.coder.clients import NO_AGENT
from secret_agent.errors import (
    CoderError,
    CoderResponseError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
    ValueSourceError,
)
from secret_agent.model import DesiredSecret, SecretMeta, SourceKind, Version
from secret_agent.redact import Secret, known_values

# Errors of one get that concern every secret, so they fail the whole pass.
_PASS_WIDE: Final = (UnauthorizedError, ForbiddenError, RateLimitedError)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """The values a source found (name -> fresh metadata and value), and the secrets
    whose answer was unusable (name -> why; never a value)."""

    values: Mapping[str, tuple[SecretMeta, Secret]] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)


class ManifestReader(Protocol):
    """What the agent source needs of `coder.AgentClient`."""

    def get_manifest_secrets(self) -> tuple[ManifestSecret, ...]: ...


AgentFactory = Callable[[], ManifestReader]
"""Gives the agent RPC client; called only when a value is actually needed from it."""


class ValueSource(Protocol):
    """Supplies values for the named secrets; a secret missing from the result is gone."""

    @property
    def rpc_calls(self) -> int:
        """GetManifest round trips this source has made."""
        ...

    def values_for(self, metas: Sequence[SecretMeta]) -> Fetched: ...


def read_manifest(agent: ManifestReader) -> tuple[ManifestSecret, ...]:
    """One `GetManifest`, every value registered for scrubbing at once.

    Raises:
        CoderError: the RPC failed (see `AgentClient.get_manifest_secrets`).
    """
    secrets = agent.get_manifest_secrets()
    known_values.add(s.value.reveal() for s in secrets)
    return secrets


def join_manifest(
    metas: Sequence[SecretMeta], manifest: Sequence[ManifestSecret]
) -> dict[str, tuple[SecretMeta, Secret]]:
    """Pair each secret's metadata with its manifest entry.

    Coder keeps env_name and file_path each unique per user (on the raw strings, so
    `~/x` and `/home/u/x` are different), and both sides read the same rows, so an
    entry belongs to the secret that shares its env_name or its file_path, compared
    as raw strings. When the entry's targets differ from the listed ones (the secret
    changed between the list and the call, or the deployment strips file paths from
    manifests), the entry wins: it is what Coder delivers now, and the next list
    shows the change. A secret with no entry vanished (deleted or disabled meanwhile).

    Raises:
        ValueSourceError: a secret's env_name and file_path match two different
            entries: the list and the manifest disagree (a retry settles it).
    """
    by_env = {m.env_name: m for m in manifest if m.env_name}
    by_path = {m.file_path: m for m in manifest if m.file_path}
    joined: dict[str, tuple[SecretMeta, Secret]] = {}
    for meta in metas:
        env = by_env.get(meta.env_name) if meta.env_name else None
        path = by_path.get(meta.file_path) if meta.file_path else None
        if env is not None and path is not None and env is not path:
            raise ValueSourceError(
                f"secret {meta.name!r}: the agent manifest gives its env_name and its"
                " file_path to two different secrets; the secrets changed while being"
                " read, the next attempt will settle it"
            )
        entry = env or path
        if entry is None:
            continue
        fresh = replace(meta, env_name=entry.env_name, file_path=entry.file_path)
        joined[meta.name] = (fresh, entry.value)
    return joined


def manifest_secrets(manifest: Sequence[ManifestSecret]) -> tuple[DesiredSecret, ...]:
    """The desired secrets of agent-only mode, where the manifest is all there is.

    The manifest carries no names, so each is made from its targets: the env_name
    when there is one, else the file_path. That is unique (env names and file paths
    are each unique per user, and a file path starts with `~/` or `/`, which no env
    name can) and stable for as long as the secret keeps its env_name (or, without
    one, its file_path). The version is `("", env_name, file_path)`: there is no
    `updated_at`, and the plan compares content, so unchanged secrets write nothing.

    Raises:
        ValueSourceError: an entry without targets, or two entries with the same
            name (a server that broke Coder's uniqueness rules).
    """
    found: dict[str, DesiredSecret] = {}
    for entry in manifest:
        name = entry.env_name or entry.file_path
        if not name or name in found:
            what = "no env_name and no file_path" if not name else f"a second {name!r}"
            raise ValueSourceError(f"the agent manifest holds a secret with {what}")
        found[name] = DesiredSecret(
            name=name,
            env_name=entry.env_name,
            file_path=entry.file_path,
            value=entry.value,
            version=Version("", entry.env_name, entry.file_path),
        )
    return tuple(found[name] for name in sorted(found))


class AgentSource:
    """Values from one `GetManifest` per pass (`agent`, and the fallback of `auto`)."""

    def __init__(self, agent: AgentFactory) -> None:
        self._agent = agent
        self._calls = 0

    @property
    def rpc_calls(self) -> int:
        return self._calls

    def values_for(self, metas: Sequence[SecretMeta]) -> Fetched:
        if not metas:
            return Fetched()  # the steady state: nothing changed, no call
        self._calls += 1
        return Fetched(values=join_manifest(metas, read_manifest(self._agent())))


class InlineSource:
    """Values from the get-by-name response (`inline`, and the first try of `auto`)."""

    def __init__(
        self, client: CoderClient, *, kind: SourceKind, fallback: AgentSource | None
    ) -> None:
        self._client = client
        self._kind = kind
        self._fallback = fallback

    @property
    def rpc_calls(self) -> int:
        return 0 if self._fallback is None else self._fallback.rpc_calls

    def values_for(self, metas: Sequence[SecretMeta]) -> Fetched:
        found: dict[str, tuple[SecretMeta, Secret]] = {}
        failed: dict[str, str] = {}
        missing: list[SecretMeta] = []
        for meta in metas:
            if missing:
                # The server has already answered one get without a value (Coder never
                # sends one): the rest come from the one GetManifest, not from more gets.
                missing.append(meta)
                continue
            try:
                fresh, value = self._get(meta.name)
            except NotFoundError:
                continue  # deleted between list and get
            except _PASS_WIDE:
                raise
            except CoderError as exc:
                failed[meta.name] = str(exc)
                continue
            if value is not None:
                known_values.add([value.reveal()])
                found[meta.name] = (fresh, value)
            elif self._fallback is not None:
                missing.append(fresh)
            else:
                raise self._no_value(meta.name)
        if missing and self._fallback is not None:
            found.update(self._fallback.values_for(missing).values)
        return Fetched(values=found, failed=failed)

    def _get(self, name: str) -> tuple[SecretMeta, Secret | None]:
        """One get, which must describe the secret asked for.

        Raises:
            CoderError: as `CoderClient.get_secret`; `CoderResponseError` when the answer
                names another secret (a server must not move a value to another name).
        """
        fresh, value = self._client.get_secret(name)
        if fresh.name != name:
            raise CoderResponseError(
                f"the get of secret {name!r} answered for secret {fresh.name!r}; refused"
            )
        return fresh, value

    def _no_value(self, name: str) -> ValueSourceError:
        if self._kind is SourceKind.INLINE:
            return ValueSourceError(
                f"secret {name!r}: values.source is 'inline' but the server sent no value;"
                " Coder itself never does (only `secret-agent dev-server --inline-values`"
                " does); inside a Coder workspace use 'agent' or 'auto'"
            )
        return ValueSourceError(
            f"secret {name!r}: no way to get its value: the server's REST answer carries no"
            f" value (Coder's never does; the dev server's does with --inline-values), and"
            f" {NO_AGENT}"
        )


def make_source(
    client: CoderClient, *, kind: SourceKind, agent: AgentFactory | None
) -> ValueSource:
    """The value source for `values.source`, with REST metadata from `client`.

    `agent` is None when there is no agent token.

    Raises:
        ValueSourceError: `agent` was asked for without an agent token.
    """
    if kind is SourceKind.AGENT:
        if agent is None:
            raise ValueSourceError(
                f"values.source is 'agent' (the workspace agent RPC), but {NO_AGENT}"
            )
        return AgentSource(agent)
    fallback = AgentSource(agent) if agent is not None and kind is SourceKind.AUTO else None
    return InlineSource(client, kind=kind, fallback=fallback)


def check_agent_only(kind: SourceKind) -> None:
    """Agent-only mode (no session token) takes every value from the manifest.

    Raises:
        ValueSourceError: `values.source` is 'inline', which needs the REST API.
    """
    if kind is SourceKind.INLINE:
        raise ValueSourceError(
            "values.source is 'inline', which reads values from the REST API, but there is"
            " no session token (CODER_SESSION_TOKEN or `coder login`); with only the agent"
            " token use 'agent' or 'auto'"
        )
