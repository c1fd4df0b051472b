"""The ledger: what this agent wrote, so it can prune only its own files.

`state_dir/ledger.json` maps each path we wrote to the secret it holds and the sha256
of the bytes we wrote. It never holds a value. Removal trusts it only together with
the file on disk: a file whose bytes no longer hash to the ledger's sha was changed
by someone else and is kept.

Each entry also records the version (`updated_at`, `env_name`, `file_path`) of what
was written there, and the env file's entry its format and which secret (at which
version) each variable came from. That is what lets a new process read the values
back from where they rest (`recall`) instead of keeping a copy in `state_dir`: the
entry and the bytes it describes change together, so a target whose write failed
keeps its old entry and is read back as the old version, never as the new one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from secret_agent import files
from secret_agent.errors import LedgerError
from secret_agent.model import NO_VERSION, EnvVariable, Version

LEDGER_NAME: Final = "ledger.json"
FORMAT_VERSION: Final = 2
# Version 1 had no versions or variables: it still tells what is ours to prune.
READABLE_VERSIONS: Final = (1, 2)
ENV_FILE_SECRET: Final = ""  # the env file's entry has no single secret


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """One file we wrote: where, for which secret ("" for the env file), which bytes.

    `version` is the secret's version written there (a secret file); `env_format` and
    `variables` describe the env file. `backup` is where the file that was there
    before us is kept (`sync.existing_files = "backup"`), "" if there was none.

    `pending` marks a write-ahead entry (`converge`): recorded before a first write to
    a target, so that a process killed between the rename and the final ledger still
    knows the file is ours. It is ours only while it holds `sha`; otherwise whatever
    is there was not written by us. `left` marks a target no secret claims any more,
    left in place (`sync.prune` off) over the user's original at `backup`.
    """

    path: str
    secret: str
    sha: str
    version: Version = NO_VERSION
    env_format: str = ""
    variables: tuple[EnvVariable, ...] = ()
    backup: str = ""
    backup_mode: int = 0  # the original's mode, to give back with it (0: unknown)
    pending: bool = False
    left: bool = False


@dataclass(frozen=True, slots=True)
class Ledger:
    """Every file this agent wrote and still owns, keyed by absolute path.

    `catalog` names every secret of the last applied state with its version, values
    or not (names and targets only, as `status` shows them): what `exec` needs to
    tell whether the values it read back are all there are.
    """

    entries: Mapping[str, LedgerEntry]
    catalog: tuple[tuple[str, Version], ...] = ()

    @classmethod
    def of(
        cls, entries: Iterable[LedgerEntry], catalog: Iterable[tuple[str, Version]] = ()
    ) -> Ledger:
        return cls({e.path: e for e in entries}, tuple(sorted(catalog)))

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
        if doc.get("version") not in READABLE_VERSIONS:
            raise LedgerError(f"{path}: unknown ledger version {doc.get('version')!r}")
        entries = [_entry(e) for e in doc["entries"]]
        catalog = [(str(c["name"]), _version(c["version"])) for c in doc.get("secrets") or []]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerError(
            f"{path}: the ledger is corrupt ({type(exc).__name__}); move it away to start over"
        ) from exc
    return Ledger.of(entries, catalog)


def _version(raw: object) -> Version:
    if raw is None:
        return NO_VERSION
    if not isinstance(raw, list) or len(raw) != 3 or not all(isinstance(x, str) for x in raw):
        raise TypeError("a version is three strings")
    return Version(*raw)


def _entry(e: Mapping[str, object]) -> LedgerEntry:
    variables = e.get("variables") or []
    if not isinstance(variables, list):
        raise TypeError("variables is a list")
    return LedgerEntry(
        path=str(e["path"]),
        secret=str(e["secret"]),
        sha=str(e["sha"]),
        version=_version(e.get("version")),
        env_format=str(e.get("env_format") or ""),
        variables=tuple(
            EnvVariable(
                name=str(v["name"]), secret=str(v["secret"]), version=_version(v["version"])
            )
            for v in variables
        ),
        backup=str(e.get("backup") or ""),
        backup_mode=int(e.get("backup_mode") or 0),  # type: ignore[call-overload]
        pending=e.get("pending") is True,
        left=e.get("left") is True,
    )


def save_ledger(state_dir: str, ledger: Ledger) -> None:
    """Write the ledger atomically (0600), entries sorted so unchanged means byte-identical."""
    doc = {
        "version": FORMAT_VERSION,
        "entries": [_doc(e) for e in sorted(ledger.entries.values(), key=lambda e: e.path)],
        "secrets": [{"name": n, "version": list(v)} for n, v in ledger.catalog],
    }
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    files.write_atomic(ledger_path(state_dir), text.encode(), roots=None)


def _doc(e: LedgerEntry) -> dict[str, object]:
    doc: dict[str, object] = {"path": e.path, "secret": e.secret, "sha": e.sha}
    if e.version != NO_VERSION:
        doc["version"] = list(e.version)
    if e.env_format:
        doc["env_format"] = e.env_format
        doc["variables"] = [
            {"name": v.name, "secret": v.secret, "version": list(v.version)} for v in e.variables
        ]
    if e.backup:
        doc["backup"] = e.backup
    if e.backup_mode:
        doc["backup_mode"] = e.backup_mode
    if e.pending:
        doc["pending"] = True
    if e.left:
        doc["left"] = True
    return doc
