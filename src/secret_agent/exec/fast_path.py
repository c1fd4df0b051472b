"""Plain `exec`: the secrets from local state, their files present, then execve.

This is the fast path of `secret-agent exec -- CMD`: when a daemon is running and its
last good sync is recent, everything needed is on local disk (the values read back
from where they rest, see `recall`, and the status file), so no network is touched
and no heavy library is imported.
import-linter keeps httpx, asyncio, structlog, tenacity, watchfiles, `passes` and `coder`
out of this module's imports, directly or not.

It does not log: it returns what it found or raises, and `cli` prints. The slow path
(a fetch first) is `exec.once`'s: it runs a pass, then comes back here to execve.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn

from secret_agent import files, paths
from secret_agent.config import Config
from secret_agent.envname import validate_env_name
from secret_agent.errors import (
    ApplyError,
    LaunchError,
    LedgerError,
    SecretRefusedError,
    UnsafePathError,
)
from secret_agent.exec.child_env import ChildEnv, child_env
from secret_agent.ledger import ENV_FILE_SECRET, Ledger, load_ledger
from secret_agent.model import DesiredState
from secret_agent.recall import recall_from, recall_state
from secret_agent.status_file import Status, pid_alive, read_status, source_of

if TYPE_CHECKING:
    from secret_agent.actions import SyncReport

# A daemon polls every `interval`; allow a couple of missed polls before its state is
# called stale and `exec` asks Coder itself.
STALE_AFTER_INTERVALS = 3
MIN_MAX_AGE = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Recalled:
    """What could be read back from disk, and which deliverable secrets could not."""

    desired: DesiredState
    missing: tuple[str, ...]


def default_max_age(config: Config) -> float:
    return max(MIN_MAX_AGE, STALE_AFTER_INTERVALS * config.sync.interval)


def daemon_state(
    config: Config, *, max_age: float, now: float | None = None
) -> DesiredState | None:
    """The running daemon's state if its last good sync is within `max_age` and every
    secret `exec` could deliver was read back, else None. A file not in place is then
    put back from the value read back (`ensure_files`), with no network."""
    status = read_status(config.sync.state_dir)
    if status is None or status.phase == "stopped" or not pid_alive(status.pid):
        return None
    if not _same_source(status, config):
        return None  # the daemon serves another deployment or user than this exec asks for
    age = _age(status.last_good_sync, now=now)
    if age is None or age > max_age:
        return None
    found = recall(config)
    if found is None or found.missing:
        return None  # where neither file nor env file has a value, exec fetches
    return found.desired


def recall(config: Config) -> Recalled | None:
    """The values read back from disk (`recall`), and the secrets of the last applied
    state that `exec` could deliver but whose value could not be read back. None when
    the ledger is unreadable.

    Raises:
        UnsafePathError: state_dir is not this user's alone, or holds a symlink.
    """
    files.check_state_dir(config.sync.state_dir)
    try:
        ledger = load_ledger(config.sync.state_dir)
    except (LedgerError, UnsafePathError):
        return None
    desired = recall_from(ledger)  # its `failed`: the catalog's secrets not read back
    delivered = _delivered(ledger)
    env_names = {name: version.env_name for name, version in ledger.catalog}
    missing = tuple(
        name
        for name, _why in desired.failed
        if name in delivered or _env_only_deliverable(config, env_names[name])
    )
    return Recalled(desired=desired, missing=missing)


def _delivered(ledger: Ledger) -> set[str]:
    """The secrets the last pass put somewhere: a file of theirs, or an env-file line.
    One it refused everywhere (a symlink at its target, a duplicate name...) is none
    of exec's business: the daemon reports it, and exec need not fetch for it."""
    names: set[str] = set()
    for entry in ledger.entries.values():
        if entry.secret != ENV_FILE_SECRET:
            names.add(entry.secret)
        names.update(v.secret for v in entry.variables)
    return names


def _env_only_deliverable(config: Config, env_name: str) -> bool:
    """Whether exec would pass a variable that rests nowhere (the env file is off)."""
    if config.env_file.path or not env_name:
        return False
    try:
        validate_env_name(env_name, secret="", allow_reserved=config.env_file.allow_reserved)
    except SecretRefusedError:
        return False
    return True


def last_known_good(config: Config) -> tuple[Recalled, str] | None:
    """The values read back from disk and when the daemon last synced ("" if unknown),
    whatever its age; None when nothing was read back or it is another deployment's."""
    found = recall(config)
    if found is None or not found.desired.secrets:
        return None
    status = read_status(config.sync.state_dir)
    if status is not None and not _same_source(status, config):
        return None  # another deployment's or user's secrets
    return found, "" if status is None else status.last_good_sync


def files_in_place(config: Config, desired: DesiredState) -> bool:
    """Whether every deliverable secret file already holds its value with the right mode.

    A read-only check (stat and hash): the common case of `exec` beside a running
    daemon, which keeps the files current, needs no lock, no plan and no write. A
    target the rules refuse (outside the roots, a symlink) is none of exec's business:
    the daemon reports it.
    """
    sync = config.sync
    for secret in desired.secrets:
        if not secret.file_path:
            continue
        try:
            path = paths.expand_target(secret.file_path, home=sync.home)
            paths.check_within_roots(path, sync.allowed_roots)
            seen = files.observe(path, roots=sync.allowed_roots)
        except UnsafePathError:
            continue
        except ApplyError:
            return False
        if not (
            seen.is_file
            and seen.mode == sync.file_mode
            and seen.sha == files.sha256_hex(secret.value.reveal().encode())
        ):
            return False
    return True


def ensure_files(config: Config, desired: DesiredState) -> SyncReport | None:
    """Make the secret files match what can be read back from disk, unless they already
    match `desired` (None). Files that match are never rewritten.

    The state applied is read back under the lock (a daemon may have just written a
    newer one), and nothing this config does not claim is removed or forgotten:
    `exec`'s flags may differ from the daemon's config, and a state read back may be
    incomplete. Without the network this can fix modes and nothing more: a value that
    is not where it should be cannot be read back.
    """
    if files_in_place(config, desired):
        return None
    from secret_agent.converge import restore_pass

    return restore_pass(config, lambda: recall_state(config.sync.state_dir), release=False)


def prepare_env(config: Config, desired: DesiredState, inherited: Mapping[str, str]) -> ChildEnv:
    return child_env(inherited, desired, allow_reserved=config.env_file.allow_reserved)


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with `argv` (PATH searched in `env`'s PATH).

    Raises:
        LaunchError: the command is missing (exit 127) or not executable (126).
        ExecTooLargeError: `argv` and `env` are more than execve takes (126): checked
            first, and the kernel's own E2BIG gets the same message.
    """
    import errno

    from secret_agent.exec.child_env import arg_max, check_exec_size, too_large

    limit = arg_max()
    check_exec_size(argv, env, limit=limit)
    try:
        os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606 - argv passes through as given
    except OSError as exc:
        if exc.errno == errno.E2BIG:  # a #! interpreter's own arguments, say: same message
            raise too_large(argv, env, limit=limit) from None
        raise LaunchError.of(argv[0], exc) from None


def _same_source(status: Status, config: Config) -> bool:
    """Whether a status document records the deployment and user `config` asks for."""
    coder = config.coder
    recorded = (status.coder_url, status.coder_user)
    return recorded == source_of(coder.url, coder.agent_url, coder.user)


def _age(stamp: str, *, now: float | None) -> float | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (time.time() if now is None else now) - moment.timestamp()
