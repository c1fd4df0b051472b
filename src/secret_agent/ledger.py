"""The ledger: what this agent wrote, so it can prune only its own files.

`state_dir/ledger.json` maps each path we wrote to the secret it holds and the sha256
of the bytes we wrote. It never holds a value. Removal trusts it only together with
the file on disk: a file whose bytes no longer hash to the ledger's sha was changed
by someone else and is kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from secret_agent import files
from secret_agent.errors import LedgerError

LEDGER_NAME: Final = "ledger.json"
FORMAT_VERSION: Final = 1
ENV_FILE_SECRET: Final = ""  # the env file's entry has no single secret


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """One file we wrote: where, for which secret ("" for the env file), which bytes."""

    path: str
    secret: str
    sha: str


@dataclass(frozen=True, slots=True)
class Ledger:
    """Every file this agent wrote and still owns, keyed by absolute path."""

    entries: Mapping[str, LedgerEntry]

    @classmethod
    def of(cls, entries: Iterable[LedgerEntry]) -> Ledger:
        return cls({e.path: e for e in entries})

    def get(self, path: str) -> LedgerEntry | None:
        return self.entries.get(path)


EMPTY: Final = Ledger({})


def ledger_path(state_dir: str) -> str:
    return os.path.join(state_dir, LEDGER_NAME)


def load_ledger(state_dir: str) -> Ledger:
    """Read the ledger; a missing one is empty.

    Raises:
        LedgerError: the file exists but is not a ledger this version can read.
    """
    path = ledger_path(state_dir)
    try:
        raw = files.read_private(path)
    except FileNotFoundError:
        return EMPTY
    except OSError as exc:
        raise LedgerError(f"{path}: cannot read the ledger: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
        if doc.get("version") != FORMAT_VERSION:
            raise LedgerError(f"{path}: unknown ledger version {doc.get('version')!r}")
        entries = [
            LedgerEntry(path=str(e["path"]), secret=str(e["secret"]), sha=str(e["sha"]))
            for e in doc["entries"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerError(
            f"{path}: the ledger is corrupt ({type(exc).__name__}); move it away to start over"
        ) from exc
    return Ledger.of(entries)


def save_ledger(state_dir: str, ledger: Ledger) -> None:
    """Write the ledger atomically (0600), entries sorted so unchanged means byte-identical."""
    doc = {
        "version": FORMAT_VERSION,
        "entries": [
            {"path": e.path, "secret": e.secret, "sha": e.sha}
            for e in sorted(ledger.entries.values(), key=lambda e: e.path)
        ],
    }
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    files.write_atomic(ledger_path(state_dir), text.encode(), roots=None)
