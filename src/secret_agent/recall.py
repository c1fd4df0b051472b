"""Recall: the values this agent delivered, read back from where they rest.

No value rests in `state_dir` (docs/where-values-rest.md). A running daemon
keeps its last known good state in memory (`LastGood`); a new process (`run --once`,
`check`, `exec`, a daemon's first pass) reads back what the ledger says it wrote:

1. Each secret file in the ledger: read it (bounded, no symlink at the target), and
   keep its bytes only if they still hash to the ledger's sha, as the ledger's
   version of that secret.
2. The env file in the ledger: the same check on the whole file, then
   `envread.parse_env` in the format it was written in; each variable becomes its
   secret's value at the version the ledger recorded.
3. A secret read back from both must agree (same version, same value); otherwise,
   like a secret read back from neither, it is left out, and the next fetch asks
   Coder for it. A recalled state is a hint for change detection and an offline
   fallback, never a reason to prune: callers that apply it pass `release=False` or
   fetch first.
4. Every other secret of the last applied state is in the state's `failed`: like a
   secret whose fetch failed, applying the state never removes or rewrites anything
   of it (its file, its line of the env file), since its value is not known.

Nothing here writes, and nothing is trusted that was not verified against the ledger.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from typing import Final

from secret_agent import files
from secret_agent.envread import parse_env
from secret_agent.errors import LedgerError, UnsafePathError
from secret_agent.files import sha256_hex
from secret_agent.ledger import ENV_FILE_SECRET, Ledger, LedgerEntry, load_ledger
from secret_agent.model import NO_VERSION, DesiredSecret, DesiredState, EnvFormat
from secret_agent.redact import Secret, known_values

EMPTY: Final = DesiredState(secrets=())
# Why a secret of the last applied state is in a recalled state's `failed` (4).
NOT_READ_BACK: Final = "its value could not be read back from its file or the env file"
# The name of the file that held every value before they stopped resting in state_dir.
LEGACY_SNAPSHOT: Final = "values.json"


class LastGood:
    """The last desired state a pass applied, in memory only (the daemon's, exec's).

    Set under the state lock by the pass that applied it (`converge`), so a restore
    that takes the lock next can never put back an older state. Thread-safe.
    """

    def __init__(self, state: DesiredState | None = None) -> None:
        self._lock = threading.Lock()
        self._state = state

    @property
    def state(self) -> DesiredState | None:
        with self._lock:
            return self._state

    def remember(self, state: DesiredState) -> None:
        with self._lock:
            self._state = state

    def __repr__(self) -> str:
        state = self.state
        return f"LastGood(secrets={None if state is None else len(state.secrets)})"


def recall_state(state_dir: str) -> DesiredState:
    """Every secret whose value can be read back from its file or the env file.

    An unreadable or corrupt ledger recalls nothing (the pass that follows reports
    it); so does a target someone changed.
    """
    try:
        ledger = load_ledger(state_dir)
    except (LedgerError, UnsafePathError):
        return EMPTY
    return recall_from(ledger)


def recall_from(ledger: Ledger) -> DesiredState:
    """`recall_state` for a ledger already read (see the module docstring).

    Only secrets of the ledger's catalog (the last applied state) at the catalog's
    version are recalled: a target whose last write failed still holds an older one.
    """
    current = dict(ledger.catalog)
    found: dict[str, DesiredSecret] = {}
    conflicted: set[str] = set()
    for entry in ledger.entries.values():
        for secret in _read_back(entry):
            if current.get(secret.name) != secret.version:
                continue
            seen = found.get(secret.name)
            if seen is not None and (seen.version, seen.value) != (secret.version, secret.value):
                conflicted.add(secret.name)  # (3)
            found.setdefault(secret.name, secret)
    secrets = tuple(found[n] for n in sorted(found) if n not in conflicted)
    known_values.add(s.value.reveal() for s in secrets)
    have = {s.name for s in secrets}
    lacking = tuple((name, NOT_READ_BACK) for name in sorted(current) if name not in have)
    return DesiredState(secrets=secrets, failed=lacking)


def _read_back(entry: LedgerEntry) -> Iterable[DesiredSecret]:
    if entry.secret == ENV_FILE_SECRET:
        return _read_env_file(entry)
    if entry.version == NO_VERSION:
        return ()  # a version-1 ledger entry: no version to vouch for
    text = _verified_text(entry)  # (1)
    if text is None:
        return ()
    secret = DesiredSecret(
        name=entry.secret,
        env_name=entry.version.env_name,
        file_path=entry.version.file_path,
        value=Secret(text),
        version=entry.version,
    )
    return (secret,)


def _read_env_file(entry: LedgerEntry) -> Iterable[DesiredSecret]:
    text = _verified_text(entry) if entry.env_format else None  # (2)
    if text is None:
        return ()
    try:
        values = parse_env(text, EnvFormat(entry.env_format))
    except ValueError:  # EnvReadError, or a format this release does not know
        return ()
    return tuple(
        DesiredSecret(
            name=v.secret,
            env_name=v.name,
            file_path=v.version.file_path,
            value=Secret(values[v.name]),
            version=v.version,
        )
        for v in entry.variables
        if v.name in values
    )


def _verified_text(entry: LedgerEntry) -> str | None:
    """The target's text if it still holds exactly the bytes the ledger recorded."""
    try:
        data = files.read_private(entry.path, max_bytes=files.MAX_HASH_BYTES)
    except (OSError, UnsafePathError):
        return None
    if sha256_hex(data) != entry.sha:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def forget_legacy_snapshot(state_dir: str) -> None:
    """Remove `values.json`, where versions before 0.2 kept every value.

    Values must rest only where the user asked; the file is ours (a symlink there is
    only unlinked, never followed), and nothing else in it is needed.
    """
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(state_dir, LEGACY_SNAPSHOT))
