"""The status file: what the daemon last did, for `secret-agent status` and `exec`.

`state_dir/status.json` (0600, written atomically) holds the daemon's pid, its phase,
the time of the last good sync, the last error, the next attempt, and each secret's
target and state. Never a value: names, paths, short hashes and error texts (which
are scrubbed and never built from values) only. A `state_dir` that is not the user's
alone, or a symlink planted in it, is refused (`files.check_state_dir`), never followed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from secret_agent import files

STATUS_NAME: Final = "status.json"
FORMAT_VERSION: Final = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretStatus:
    """One secret's delivery: where it goes and what the last pass did with it."""

    name: str
    env_name: str = ""
    path: str = ""
    state: str = ""
    short_sha: str = ""
    error: str = ""
    # Where the file that was at `path` before secret-agent is kept ("" if none).
    backup: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """The daemon's status document. Times are ISO 8601 UTC strings ("" = never)."""

    pid: int
    phase: str  # starting | synced | retrying | stopped
    version: str = ""
    started_at: str = ""
    last_attempt: str = ""
    last_good_sync: str = ""
    last_error: str = ""
    last_error_kind: str = ""
    consecutive_failures: int = 0
    next_attempt: str = ""
    requests_last_pass: int = 0
    env_file: str = ""
    env_file_backup: str = ""  # the user's own file that was at the env file's path
    # Whose secrets these are: `exec` uses the daemon's state only for the same ones.
    coder_url: str = ""
    coder_user: str = ""
    secrets: tuple[SecretStatus, ...] = field(default=())


def source_of(url: str, agent_url: str, user: str) -> tuple[str, str]:
    """The (deployment, user) key a status is recorded under and `exec` matches."""
    return (url or agent_url).rstrip("/"), user


def now_iso(epoch: float | None = None) -> str:
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_path(state_dir: str) -> str:
    return os.path.join(state_dir, STATUS_NAME)


def write_status(state_dir: str, status: Status) -> None:
    doc = {"format": FORMAT_VERSION, **asdict(status)}
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    files.write_atomic(status_path(state_dir), text.encode(), roots=None)


def read_status(state_dir: str) -> Status | None:
    """The last status document, or None when there is none (or it is unreadable).

    A field of the wrong type reads as its default (a pid that is not a number is 0,
    no process), so a damaged file makes `status` say less, never crash.

    Read without the state lock, so `state_dir` is checked here as the lock checks it.

    Raises:
        UnsafePathError: `state_dir` is not ours alone or holds a symlink (a planted
            `status.json` among them), as `files.check_state_dir` says.
        ApplyError: `state_dir` cannot be opened to be checked.
    """
    files.check_state_dir(state_dir)
    try:
        doc = json.loads(files.read_private(status_path(state_dir), max_bytes=4 << 20))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or type(doc.get("format")) is not int:
        return None
    if doc["format"] != FORMAT_VERSION:
        return None
    secrets = doc.get("secrets")
    return _typed(
        Status,
        doc,
        pid=0,
        phase="",
        secrets=tuple(
            _typed(SecretStatus, s, name="")
            for s in (secrets if isinstance(secrets, list) else ())
            if isinstance(s, dict)
        ),
    )


_T = TypeVar("_T")


def _typed(cls: type[_T], doc: dict[str, Any], **given: object) -> _T:
    """`cls` from the fields of `doc` that have the type of the field's default; `given`
    supplies the defaults of fields without one (and of those parsed already, which a
    JSON value never matches: a tuple)."""
    kwargs: dict[str, Any] = dict(given)
    for f in fields(cls):  # type: ignore[arg-type]
        value = doc.get(f.name)
        if type(value) is type(given.get(f.name, f.default)):
            kwargs[f.name] = value
    return cls(**kwargs)


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid exists (the daemon that wrote a status)."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True
