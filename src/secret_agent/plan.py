"""Plan: desired state x ledger x what is on disk -> the actions of one pass.

Pure: the disk is read only through the `observe` callable passed in, so the whole
decision can be tested with a dict. The algorithm:

1. Each desired secret with a `file_path`, in name order: expand `~/` against
   `sync.home`, check it lies in `allowed_roots`, refuse secret-agent's own files
   (the config file, the token files, `state_dir` and the `coder login` directory,
   compared as written and with symlinks resolved), and refuse a second claim on the
   same path (the first by name wins) or on the env file's path.
2. Observe the target. A symlink there, or a symlinked parent leading out of the
   roots, refuses the secret. Same bytes and mode: keep. Same bytes, other mode: fix
   the mode only. Anything else: write.
3. Every ledger entry no longer claimed: if prune is on and the file still holds the
   bytes we wrote, remove it; if it is already gone, forget it; if someone changed it,
   keep it and report it (foreign). Prune off: forget it and leave the file; one that
   replaced a file of the user's (5) keeps its entry, marked `left`, until it is gone
   (then theirs is put back) or claimed again. An entry
   of a secret whose fetch failed this pass (`DesiredState.failed`) is held: neither
   removed nor forgotten, since an error never deletes anything.
4. Render the env file from every secret with an `env_name` (refusing, per variable,
   invalid or reserved names, duplicates and values the format cannot carry), and
   write it unless the bytes and mode on disk already match. It is held as it is when
   a failed secret with no previous state has a variable in it: rewriting would drop
   that variable because of an error.
5. A target (secret file or env file) that holds a regular file we did not write
   (no ledger entry; even one already holding the very bytes) follows
   `sync.existing_files`: "replace" writes over it; "refuse" refuses that target;
   "backup" (default) has apply move it aside to `NAME.secret-agent-orig` first
   (refused if that name is taken: never a second backup over the first), and the
   ledger remembers the backup so that releasing the target in (3) puts the original
   back. An entry whose backup is gone while the target holds other bytes than ours
   is the user's file moved back: kept aside again, not overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from secret_agent import envfile, paths
from secret_agent.actions import (
    FileAction,
    ForgetFile,
    KeepFile,
    Plan,
    RemoveFile,
    WriteEnvFile,
    WriteFile,
)
from secret_agent.errors import (
    ApplyError,
    DuplicateTargetError,
    PathRefusedError,
    SecretRefusedError,
    SymlinkRefusedError,
    UnsafePathError,
)
from secret_agent.files import sha256_hex
from secret_agent.ledger import ENV_FILE_SECRET, Ledger, LedgerEntry
from secret_agent.model import (
    DesiredSecret,
    DesiredState,
    EnvFormat,
    EnvVariable,
    FileState,
    Observed,
)

Observe = Callable[[str], Observed]
"""Reads one path's state; raises `UnsafePathError` for a forbidden symlinked parent."""

ENV_FILE_MODE = 0o600
BACKUP_SUFFIX = ".secret-agent-orig"


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """Where files go: the parts of the config the plan needs."""

    home: str
    roots: Sequence[str]
    file_mode: int = 0o600
    prune: bool = True
    # False: targets not claimed now are none of this pass's business (exec, whose
    # flags may differ from the daemon's config): no removal, and no ledger change.
    release: bool = True
    env_path: str = ""
    env_format: EnvFormat = EnvFormat.POSIX
    allow_reserved: Collection[str] = ()
    existing_files: str = "backup"  # backup | refuse | replace (step 5)
    # secret-agent's own: (path, what it is, whether everything below it counts too).
    protected: tuple[tuple[str, str, bool], ...] = ()


def make_plan(
    desired: DesiredState,
    ledger: Ledger,
    *,
    targets: Targets,
    observe_secret: Observe,
    observe_local: Observe,
    resolve: Callable[[str], str] = lambda path: path,
) -> Plan:
    """Decide what one pass does. `observe_secret` is confined to the roots;
    `observe_local` reads the user's own configured paths (the env file); `resolve`
    gives a path with its symlinks resolved (`os.path.realpath`)."""
    refused: list[SecretRefusedError] = []
    actions: list[FileAction] = []
    claimed: set[str] = set()
    for secret in desired.secrets:
        if not secret.file_path:
            continue
        try:
            action = _file_action(
                secret,
                claimed,
                ledger.get(paths.expand_target(secret.file_path, home=targets.home))
                if _clean(secret.file_path, targets.home)
                else None,
                targets=targets,
                observe=observe_secret,
                resolve=resolve,
            )
        except SecretRefusedError as exc:
            refused.append(exc)
            continue
        claimed.add(action.path)
        actions.append(action)
    held = {name for name, _why in desired.failed}
    env_file, env_refused, env_why = _env_action(
        desired, ledger, targets=targets, observe=observe_local, resolve=resolve
    )
    refused.extend(env_refused)
    env_held = env_file is not None and _env_held(desired, ledger, held, env_file.path)
    if env_file is not None and not env_held:
        claimed.add(env_file.path)
    for entry in sorted(ledger.entries.values(), key=lambda e: e.path):
        if entry.path in claimed or not targets.release or entry.secret in held:
            continue
        if env_held and entry.path == targets.env_path:
            continue
        local = entry.secret == ENV_FILE_SECRET
        release = _release(
            entry, prune=targets.prune, observe=observe_local if local else observe_secret
        )
        if release is not None:
            actions.append(release)
    if env_held:
        env_file = None
    return Plan(
        files=tuple(actions), env_file=env_file, refused=tuple(refused), env_refused=env_why
    )


def _clean(file_path: str, home: str) -> bool:
    try:
        paths.expand_target(file_path, home=home)
    except UnsafePathError:
        return False
    return True


def _file_action(
    secret: DesiredSecret,
    claimed: set[str],
    entry: LedgerEntry | None,
    *,
    targets: Targets,
    observe: Observe,
    resolve: Callable[[str], str],
) -> WriteFile | KeepFile:
    # (1)
    try:
        path = paths.expand_target(secret.file_path, home=targets.home)
        paths.check_within_roots(path, targets.roots)
    except UnsafePathError as exc:
        raise PathRefusedError(exc.reason, secret=secret.name) from None
    own = own_file(path, resolve(path), targets.protected)
    if own:
        raise PathRefusedError(
            f"{path} is {own}; secret-agent never lets a secret overwrite its own files",
            secret=secret.name,
        )
    if path in claimed:
        raise DuplicateTargetError(
            f"file {path} is already the target of another secret", secret=secret.name
        )
    if path == targets.env_path:
        raise DuplicateTargetError(f"file {path} is the env file", secret=secret.name)
    # (2)
    try:
        seen = observe(path)
    except UnsafePathError as exc:
        raise SymlinkRefusedError(exc.reason, secret=secret.name) from None
    except ApplyError as exc:  # e.g. EACCES: this secret fails, the others go on
        raise PathRefusedError(f"cannot inspect {path}: {exc}", secret=secret.name) from None
    if seen.is_symlink:
        raise SymlinkRefusedError(
            f"{path} is a symlink; secret-agent never writes through one", secret=secret.name
        )
    content = secret.value.reveal().encode()
    sha = sha256_hex(content)
    entry = _ours(entry, seen, observe)
    theirs = seen.exists and seen.is_file and entry is None
    original, why = _original(path, entry, seen, theirs=theirs, policy=targets.existing_files)
    if why:
        raise PathRefusedError(why, secret=secret.name)
    if seen.exists and seen.is_file and seen.sha == sha and not _kept_aside(theirs, targets):
        if seen.mode == targets.file_mode:
            return KeepFile(
                secret=secret.name,
                path=path,
                sha=sha,
                version=secret.version,
                backup=original.path,
                backup_mode=original.mode,
            )
        return WriteFile(
            secret=secret.name,
            path=path,
            content=secret.value,
            sha=sha,
            version=secret.version,
            mode_only=True,
            backup=original.path,
            backup_mode=original.mode,
        )
    return WriteFile(
        secret=secret.name,
        path=path,
        content=secret.value,
        sha=sha,
        version=secret.version,
        backup=original.path,
        make_backup=original.make,
        backup_mode=original.mode,
    )


class _Original(NamedTuple):
    """(5) Where the file that was at a target before us is kept, whether apply is to
    move it there first, and its mode (given back with it; 0 when unknown)."""

    path: str
    make: bool
    mode: int


def _original(
    path: str, entry: LedgerEntry | None, seen: Observed, *, theirs: bool, policy: str
) -> tuple[_Original, str]:
    """(5) The original of the target at `path` (secret file or env file), and why the
    target is refused ("" if it is not): the one the ledger knows of, or, for a file
    we did not write (`theirs`), what `sync.existing_files` says to do with it."""
    if not theirs:
        if entry is None or not entry.backup:
            return _NO_ORIGINAL, ""
        return _Original(entry.backup, False, entry.backup_mode), ""
    backup, why = _existing(path, policy=policy)
    return (_Original(backup, True, seen.mode) if backup else _NO_ORIGINAL), why


_NO_ORIGINAL: Final = _Original("", False, 0)


def _ours(entry: LedgerEntry | None, seen: Observed, observe: Observe) -> LedgerEntry | None:
    """The ledger entry that makes the target ours, if any.

    A write-ahead (`pending`) entry counts only while the file holds the bytes it
    announced (the write it announced was done, and the process was killed before the
    final ledger). An entry whose backup is gone while the target holds other bytes
    than ours counts no more: the user moved their original back (5).
    """
    if entry is None or (seen.is_file and seen.sha == entry.sha):
        return entry
    if entry.pending:
        return None
    if entry.backup and seen.is_file and not _exists(entry.backup, observe):
        return None
    return entry


def _exists(path: str, observe: Observe) -> bool:
    try:
        return observe(path).exists
    except (UnsafePathError, ApplyError):
        return True  # unsure: keep trusting the ledger


def _kept_aside(theirs: bool, targets: Targets) -> bool:
    """(5) Whether a file we did not write goes through `existing_files` even when it
    already holds the value: adopting it would delete the user's file with the secret."""
    return theirs and targets.existing_files != "replace"


def backup_path(path: str) -> str:
    """Where the file that was at `path` before secret-agent is kept."""
    return path + BACKUP_SUFFIX


def _existing(path: str, *, policy: str) -> tuple[str, str]:
    """(5) For a target holding a file we did not write: (backup to make, why refused)."""
    if policy == "replace":
        return "", ""
    if policy == "refuse":
        return "", (
            f"{path} holds a file secret-agent did not write, and sync.existing_files is"
            ' "refuse"; move it away, or set it to "backup" or "replace"'
        )
    # Whether the backup name is free is apply's to find out, at the moment it links:
    # `originals.keep` never replaces a name.
    return backup_path(path), ""


def own_file(path: str, real: str, protected: Sequence[tuple[str, str, bool]]) -> str:
    """What of secret-agent's own `path` (or its resolved form `real`) is, or ""."""
    if path.endswith(BACKUP_SUFFIX):
        return "where secret-agent keeps a file it replaced"
    for mine, what, below in protected:
        for candidate in (path, real):
            if candidate == mine or (below and paths.is_within(candidate, mine)):
                return what
    return ""


def _env_held(desired: DesiredState, ledger: Ledger, held: set[str], path: str) -> bool:
    # (4) A failed secret absent from `desired` whose variable the env file holds.
    entry = ledger.get(path)
    if entry is None or not held:
        return False
    present = {s.name for s in desired.secrets}
    return any(v.secret in held and v.secret not in present for v in entry.variables)


def _release(
    entry: LedgerEntry, *, prune: bool, observe: Observe
) -> RemoveFile | ForgetFile | None:
    # (3)
    def forget(state: FileState, *, keep: bool = False) -> ForgetFile:
        return ForgetFile(
            secret=entry.secret,
            path=entry.path,
            state=state,
            backup=entry.backup,
            backup_mode=entry.backup_mode,
            keep=keep,
        )

    if not prune and not entry.backup:
        return forget(FileState.LEFT)
    try:
        seen = observe(entry.path)
    except UnsafePathError:
        return forget(FileState.FOREIGN)
    except ApplyError:
        # Unreadable now: let apply try (and fail) the checked removal, which keeps the
        # ledger entry, so the file is pruned once it can be read again.
        seen = None
    if seen is not None and not seen.exists:
        return forget(FileState.REMOVED)  # and a backup goes back (apply)
    if not prune:
        # Left in place over the user's original: the entry stays (marked `left`, said
        # once), so the path is still known as ours with theirs beside it.
        return None if entry.left else forget(FileState.LEFT, keep=True)
    if seen is None or (seen.is_file and not seen.is_symlink and seen.sha == entry.sha):
        return RemoveFile(
            secret=entry.secret,
            path=entry.path,
            sha=entry.sha,
            restore=entry.backup,
            restore_mode=entry.backup_mode,
        )
    return forget(FileState.FOREIGN)


def _env_action(
    desired: DesiredState,
    ledger: Ledger,
    *,
    targets: Targets,
    observe: Observe,
    resolve: Callable[[str], str],
) -> tuple[WriteEnvFile | None, tuple[SecretRefusedError, ...], str]:
    # (4)
    entries = [
        envfile.EnvEntry(secret=s.name, name=s.env_name, value=s.value)
        for s in desired.secrets
        if s.env_name
    ]
    if not targets.env_path:
        # No env file, but the names and values are still checked so `check` and the
        # exit code tell the user about a variable that could never be delivered.
        rendered = envfile.render_env(
            entries, EnvFormat.JSON, allow_reserved=targets.allow_reserved
        )
        return None, rendered.refused, ""
    rendered = envfile.render_env(
        entries, targets.env_format, allow_reserved=targets.allow_reserved
    )
    own = own_file(targets.env_path, resolve(targets.env_path), targets.protected)
    if own:
        return (
            None,
            rendered.refused,
            (
                f"env file {targets.env_path} is {own}; secret-agent never writes over its"
                " own files: set env_file.path to another file"
            ),
        )
    content = rendered.content.reveal().encode()
    sha = sha256_hex(content)
    try:
        seen = observe(targets.env_path)
    except (UnsafePathError, ApplyError):
        seen = Observed(path=targets.env_path, exists=False)  # apply's write reports why
    entry = _ours(ledger.get(targets.env_path), seen, observe)
    theirs = seen.exists and seen.is_file and entry is None
    unchanged = (
        not _kept_aside(theirs, targets)
        and seen.exists
        and seen.is_file
        and not seen.is_symlink
        and seen.sha == sha
        and seen.mode == ENV_FILE_MODE
    )
    original, why = _original(
        targets.env_path, entry, seen, theirs=theirs, policy=targets.existing_files
    )
    if why:
        return None, rendered.refused, f"env file {why}"
    # The first secret to claim a name owns it (render_env refuses the rest).
    owner: dict[str, DesiredSecret] = {}
    for s in desired.secrets:
        if s.env_name:
            owner.setdefault(s.env_name, s)
    action = WriteEnvFile(
        path=targets.env_path,
        content=rendered.content,
        sha=sha,
        variables=rendered.variables,
        env_format=targets.env_format.value,
        written=tuple(
            EnvVariable(name=n, secret=owner[n].name, version=owner[n].version)
            for n in rendered.variables
        ),
        unchanged=unchanged,
        backup=original.path,
        make_backup=original.make,
        backup_mode=original.mode,
    )
    return action, rendered.refused, ""
