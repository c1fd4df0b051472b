"""Plan: desired state x ledger x what is on disk -> the actions of one pass.

Pure: the disk is read only through the `observe` callable passed in, so the whole
decision can be tested with a dict. The algorithm:

1. Each desired secret with a `file_path`, in name order: expand `~/` against
   `sync.home`, check it lies in `allowed_roots`, refuse a second claim on the same
   path (the first by name wins) or on the env file's path.
2. Observe the target. A symlink there, or a symlinked parent leading out of the
   roots, refuses the secret. Same bytes and mode: keep. Same bytes, other mode: fix
   the mode only. Anything else: write.
3. Every ledger entry no longer claimed: if prune is on and the file still holds the
   bytes we wrote, remove it; if it is already gone, forget it; if someone changed it,
   keep it and report it (foreign). Prune off: forget it and leave the file.
4. Render the env file from every secret with an `env_name` (refusing, per variable,
   invalid or reserved names, duplicates and values the format cannot carry), and
   write it unless the bytes and mode on disk already match.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

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
from secret_agent.model import DesiredSecret, DesiredState, EnvFormat, FileState, Observed

Observe = Callable[[str], Observed]
"""Reads one path's state; raises `UnsafePathError` for a forbidden symlinked parent."""

ENV_FILE_MODE = 0o600


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


def make_plan(
    desired: DesiredState,
    ledger: Ledger,
    *,
    targets: Targets,
    observe_secret: Observe,
    observe_local: Observe,
) -> Plan:
    """Decide what one pass does. `observe_secret` is confined to the roots;
    `observe_local` reads the user's own configured paths (the env file)."""
    refused: list[SecretRefusedError] = []
    actions: list[FileAction] = []
    claimed: set[str] = set()
    for secret in desired.secrets:
        if not secret.file_path:
            continue
        try:
            action = _file_action(secret, claimed, targets=targets, observe=observe_secret)
        except SecretRefusedError as exc:
            refused.append(exc)
            continue
        claimed.add(action.path)
        actions.append(action)
    env_file, env_refused = _env_action(desired, targets=targets, observe=observe_local)
    refused.extend(env_refused)
    if env_file is not None:
        claimed.add(env_file.path)
    for entry in sorted(ledger.entries.values(), key=lambda e: e.path):
        if entry.path not in claimed and targets.release:
            local = entry.secret == ENV_FILE_SECRET
            actions.append(
                _release(
                    entry, prune=targets.prune, observe=observe_local if local else observe_secret
                )
            )
    return Plan(files=tuple(actions), env_file=env_file, refused=tuple(refused))


def _file_action(
    secret: DesiredSecret, claimed: set[str], *, targets: Targets, observe: Observe
) -> WriteFile | KeepFile:
    # (1)
    try:
        path = paths.expand_target(secret.file_path, home=targets.home)
        paths.check_within_roots(path, targets.roots)
    except UnsafePathError as exc:
        raise PathRefusedError(exc.reason, secret=secret.name) from None
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
    if seen.exists and seen.is_file and seen.sha == sha:
        if seen.mode == targets.file_mode:
            return KeepFile(secret=secret.name, path=path, sha=sha)
        return WriteFile(
            secret=secret.name, path=path, content=secret.value, sha=sha, mode_only=True
        )
    return WriteFile(secret=secret.name, path=path, content=secret.value, sha=sha)


def _release(entry: LedgerEntry, *, prune: bool, observe: Observe) -> RemoveFile | ForgetFile:
    # (3)
    if not prune:
        return ForgetFile(secret=entry.secret, path=entry.path, state=FileState.LEFT)
    try:
        seen = observe(entry.path)
    except UnsafePathError:
        return ForgetFile(secret=entry.secret, path=entry.path, state=FileState.FOREIGN)
    except ApplyError:
        # Unreadable now: let apply try (and fail) the checked removal, which keeps the
        # ledger entry, so the file is pruned once it can be read again.
        return RemoveFile(secret=entry.secret, path=entry.path, sha=entry.sha)
    if not seen.exists:
        return ForgetFile(secret=entry.secret, path=entry.path, state=FileState.REMOVED)
    if seen.is_file and not seen.is_symlink and seen.sha == entry.sha:
        return RemoveFile(secret=entry.secret, path=entry.path, sha=entry.sha)
    return ForgetFile(secret=entry.secret, path=entry.path, state=FileState.FOREIGN)


def _env_action(
    desired: DesiredState, *, targets: Targets, observe: Observe
) -> tuple[WriteEnvFile | None, tuple[SecretRefusedError, ...]]:
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
        return None, rendered.refused
    rendered = envfile.render_env(
        entries, targets.env_format, allow_reserved=targets.allow_reserved
    )
    content = rendered.content.reveal().encode()
    sha = sha256_hex(content)
    try:
        seen = observe(targets.env_path)
    except (UnsafePathError, ApplyError):
        seen = Observed(path=targets.env_path, exists=False)  # apply's write reports why
    unchanged = (
        seen.exists
        and seen.is_file
        and not seen.is_symlink
        and seen.sha == sha
        and seen.mode == ENV_FILE_MODE
    )
    action = WriteEnvFile(
        path=targets.env_path,
        content=rendered.content,
        sha=sha,
        variables=rendered.variables,
        unchanged=unchanged,
    )
    return action, rendered.refused
