"""The only code that writes, inspects or removes secret files.

Every operation reaches the target's directory by the walk of `dirwalk`, which opens
directories one name at a time with `O_NOFOLLOW` relative to the parent's fd, and then
works relative to that directory's fd, so what was checked is what is written: no path
string is trusted once a walk has begun. It knows paths and bytes, never secret names,
values' meaning or env formats. Like Kubernetes' AtomicWriter it does not synchronise
writers: `apply` holds `lock_exclusive` for a whole pass (a temp file's `flock` only
tells a sweeper that its writer is alive).

`write_atomic(path, content)` does, in order (the body carries the numbers as `# (n)`;
steps (1) and (2) are `dirwalk.cut_target` and `dirwalk.open_parent`, whose docstrings
carry the same numbers):

1. Take a path already cleaned by `paths.expand_target` (absolute, no `.`, `..` or `//`)
   and check it lies lexically below one of `roots` (`roots=None`: a file the user
   configured locally, no root check; every other rule still holds).
2. Open each directory from the outermost containing root down with
   `O_DIRECTORY | O_NOFOLLOW`, relative to its parent's fd, creating missing ones with
   `dir_mode` and then an explicit `fchmod` (mkdir applies the umask). Existing
   directories keep their mode. A symlinked directory on the way is followed only when
   its fully resolved target lies inside the realpath'd roots; it is then re-opened by
   walking that resolved (link-free) path from `/`, again with `O_NOFOLLOW`, so a link
   swapped in after the check is refused instead of followed. Anything else is refused
   (`UnsafePathError(symlink=True)`). The root itself is opened as configured.
3. `lstat` the target through the directory fd. A symlink is refused, never written
   through or replaced; so is anything but a regular file. A regular file is opened
   with `O_NOFOLLOW | O_NONBLOCK` and its first `len(content) + 1` bytes compared
   (never an unbounded read of a foreign file). If they match, `fchmod` it to
   `file_mode` when its bits differ, and stop: no rewrite, mtime unchanged.
4. Create `.{name}.secret-agent.{random}.tmp` in the same directory with
   `O_CREAT | O_EXCL | O_NOFOLLOW`, mode `file_mode`, take `flock(LOCK_EX)` on it
   (held until after (5): see Sweeping), then `fchmod` it (umask-proof), write every
   byte, `fsync`.
5. `rename` the temp file over the target, both relative to the directory fd. This is
   the only commit point: a reader sees the old bytes or the new, never a torn file.
6. `fsync` the directory, so the rename survives a crash.
7. Return the sha256 of `content`, which the caller records in the ledger.

Any failure before (5) unlinks the temp file. `OSError` becomes `ApplyError` at this
module's boundary; a path that escapes the roots or crosses a forbidden symlink is an
`UnsafePathError`.

Sweeping: a writer killed between (4) and (5) leaves its temp file, values and all.
The writer holds `flock(LOCK_EX)` on its temp file from (4) until after (5); once
`write_atomic` or `remove_if_unchanged` has opened a directory (2), it removes what
dead writers left there first (`sweep_temps` does only that). A candidate is a regular
file owned by us named exactly as `_create_temp` names (`.{stem}.secret-agent.{12
hex}.tmp`), opened `O_NOFOLLOW | O_NONBLOCK` and checked to be that same file, and is
unlinked only when `flock(LOCK_EX | LOCK_NB)` on it succeeds: a live writer (another
secret-agent sharing the directory) is never disturbed. Sweeps run under the state
lock, so no writer of the same `state_dir` can be between its `open` and its `flock`;
one of another `state_dir` caught in that gap loses only its temp file: its rename
then fails, nothing is changed, and its next pass writes again. Nothing else is
removed: no lookalike name, symlink, directory or other user's file.

The state directory must be ours alone: `lock_exclusive` and `check_state_dir` refuse
one not owned by the current user, with any group or other permission bit, or holding
a symlink (a planted `ledger.json`, `status.json` or `lock`, named and never followed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from secret_agent import paths
from secret_agent.dirwalk import (
    Target,
    check_private_dir,
    cut_target,
    is_link_at,
    lstat_at,
    open_parent,
)
from secret_agent.errors import UnsafePathError, os_errors_as_apply_errors
from secret_agent.model import FileState, Observed

# Coder caps a manifest at 4 MiB, so a larger file cannot hold a value we wrote.
MAX_HASH_BYTES: Final = 4 * 1024 * 1024
# The largest ledger or status file `read_private` reads: far above any real one, but bounded.
MAX_READ_BYTES: Final = 64 * 1024 * 1024

_CHUNK: Final = 64 * 1024
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_NAME: Final = "lock"
# Held for its whole life by the daemon that keeps this state_dir (see `keeper_lock`).
_KEEPER_LOCK_NAME: Final = "keeper.lock"
# Leaves room for the prefix and suffix of a temp name within NAME_MAX (255 bytes).
_TEMP_STEM_BYTES: Final = 200
# Exactly the names `_create_temp` makes: nothing else is ever swept.
_TEMP_NAME: Final = re.compile(r"\.(.+)\.secret-agent\.[0-9a-f]{12}\.tmp", re.DOTALL)


def sha256_hex(data: bytes) -> str:
    """The full lowercase hex sha256 of `data`, as the ledger records it."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResult:
    """What `write_atomic` did: `written` (new bytes renamed in) or `mode_fixed` or neither."""

    sha: str
    written: bool
    mode_fixed: bool
    bytes_written: int


def write_atomic(
    path: str,
    content: bytes,
    *,
    roots: Sequence[str] | None,
    file_mode: int = 0o600,
    dir_mode: int = 0o700,
) -> WriteResult:
    """Make `path` hold exactly `content` with `file_mode`, by steps (1)-(7) above.

    Raises:
        UnsafePathError: `path` is not clean, lies outside `roots`, crosses a symlinked
            directory leading outside them, or the target is a symlink or not a file.
        ApplyError: the OS refused a step (carries `errno`); the target is untouched.
    """
    target = cut_target(path, roots)  # (1)
    sha = sha256_hex(content)
    with os_errors_as_apply_errors(path, "cannot write"), contextlib.ExitStack() as stack:
        dfd = open_parent(target, create=True, dir_mode=dir_mode)  # (2)
        stack.callback(os.close, dfd)
        _sweep(dfd, target)  # what dead writers left in the directory (2) opened
        mode_fixed = _keep_if_same(dfd, target, content, file_mode)  # (3)
        if mode_fixed is not None:
            return WriteResult(sha=sha, written=False, mode_fixed=mode_fixed, bytes_written=0)
        _replace(dfd, target.name, content, file_mode)  # (4) and (5)
        os.fsync(dfd)  # (6)
    return WriteResult(sha=sha, written=True, mode_fixed=False, bytes_written=len(content))  # (7)


def observe(path: str, *, roots: Sequence[str] | None) -> Observed:
    """What is at `path` now, by the walk of step (2) without creating anything.

    A missing file or directory gives `exists=False`; a symlink at the target gives
    `is_symlink=True` and no sha; a regular file over `MAX_HASH_BYTES` gives `sha=""`
    (it cannot be ours).

    Raises:
        UnsafePathError: as `write_atomic`, except that a symlink at the target is reported.
        ApplyError: the OS refused to open or read something.
    """
    target = cut_target(path, roots)
    with os_errors_as_apply_errors(path, "cannot inspect"), contextlib.ExitStack() as stack:
        found = _inspect(target, stack)
        if found is None:
            return Observed(path=path, exists=False)
        dfd, st = found
        if not stat.S_ISREG(st.st_mode):
            link = stat.S_ISLNK(st.st_mode)
            return Observed(path=path, exists=True, mode=stat.S_IMODE(st.st_mode), is_symlink=link)
        fd, now = _open_regular(dfd, target, st, stack)
        sha = _hash_bounded(fd)
        mode = stat.S_IMODE(now.st_mode)
        return Observed(path=path, exists=True, sha=sha, mode=mode, is_file=True)


def remove_if_unchanged(path: str, sha: str, *, roots: Sequence[str] | None) -> FileState:
    """Remove `path` only while it is a regular file whose sha256 is `sha`.

    Returns `FileState.REMOVED` when removed or already gone (nothing left to remove),
    `FileState.FOREIGN` when kept: changed bytes, a symlink, or not a regular file.
    Directories are never removed. No syscall unlinks "only this inode", so the last
    check and the `unlink` are as close together as two syscalls can be.

    Raises:
        UnsafePathError: as `observe`.
        ApplyError: the OS refused to read or remove the file.
    """
    target = cut_target(path, roots)
    with os_errors_as_apply_errors(path, "cannot remove"), contextlib.ExitStack() as stack:
        found = _inspect(target, stack, sweep=True)
        if found is None:
            return FileState.REMOVED
        dfd, st = found
        if not stat.S_ISREG(st.st_mode):
            return FileState.FOREIGN
        fd, now = _open_regular(dfd, target, st, stack)
        if not sha or _hash_bounded(fd) != sha or not _same_file(lstat_at(dfd, target.name), now):
            return FileState.FOREIGN
        os.unlink(target.name, dir_fd=dfd)
        os.fsync(dfd)
    return FileState.REMOVED


def sweep_temps(path: str, *, roots: Sequence[str] | None) -> tuple[str, ...]:
    """Remove the temp files that killed writers left beside `path` (see Sweeping).

    Walks to the directory that holds `path` as `observe` does, creating nothing: a
    missing directory has nothing to sweep. Returns the paths removed (names only, for
    the caller to report). A candidate that cannot be checked or removed is left as it is.

    Raises:
        UnsafePathError: as `observe`.
        ApplyError: the OS refused to open a directory on the way.
    """
    target = cut_target(path, roots)
    with os_errors_as_apply_errors(path, "cannot sweep"), contextlib.ExitStack() as stack:
        try:
            dfd = open_parent(target, create=False)
        except FileNotFoundError:
            return ()
        stack.callback(os.close, dfd)
        return _sweep(dfd, target)


def read_private(path: str, *, max_bytes: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a file this agent keeps for itself (ledger, status), read safely.

    Walks as `observe` with `roots=None`; a symlink at the target, anything but a regular
    file, or more than `max_bytes` is an error. Unlike the rest of this module it raises
    the OS's errors: what a missing or unreadable file of its own means is the caller's
    decision (an empty ledger, no status).

    Raises:
        FileNotFoundError: the file, or a directory on the way, does not exist.
        OSError: any other failure (ELOOP for a symlink, EFBIG when too large).
        UnsafePathError: `path` is not a clean absolute path.
    """
    target = cut_target(path, None)
    with contextlib.ExitStack() as stack:
        found = _inspect(target, stack)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        dfd, st = found
        if stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, "a symlink sits at the target", path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        fd, _ = _open_regular(dfd, target, st, stack)
        data = _read_bounded(fd, max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes", path)
    return data


def lock_exclusive(state_dir: str) -> contextlib.AbstractContextManager[bool]:
    """Hold `flock(LOCK_EX)` on `state_dir/lock` for the `with` block, blocking until free.

    Creates `state_dir` (mode 0700) and the lock file (0600) by the walk of step (2)
    with no root check, and refuses a `state_dir` that `check_state_dir` refuses. A
    daemon and an `exec` take it around a whole pass so they never write at the same
    time. Errors surface on entering the block.

    Raises:
        UnsafePathError: `state_dir` is not a clean absolute path, or is refused as by
            `check_state_dir` (a symlinked `lock` included).
        ApplyError: the directory or lock file cannot be created or locked.
    """
    return _held_lock(state_dir, _LOCK_NAME, blocking=True)


def keeper_lock(state_dir: str) -> contextlib.AbstractContextManager[bool]:
    """Try to become the one daemon that keeps `state_dir`: `flock(LOCK_EX|LOCK_NB)` on
    `state_dir/keeper.lock`, held for the `with` block; yields whether it was taken.

    `exec --watch` beside a `run` daemon must not prune with its own flags what the
    daemon's config claims; the lock is how it knows it is beside one.

    Raises:
        UnsafePathError, ApplyError: as `lock_exclusive`.
    """
    return _held_lock(state_dir, _KEEPER_LOCK_NAME, blocking=False)


def check_state_dir(state_dir: str) -> None:
    """Refuse a `state_dir` that is not ours alone, for readers that take no lock.

    `status` and exec's fast path read state files without `lock_exclusive`, which
    makes the same check. A missing `state_dir` passes: the lock creates it 0700.

    Raises:
        UnsafePathError: `state_dir` is not a clean absolute path, is not owned by the
            current user, has any group or other permission bit (the message names the
            `chmod 700` that fixes it), or holds a symlink (named in the message).
        ApplyError: the OS refused to open or list it.
    """
    target = _lock_target(state_dir)
    directory = posixpath.dirname(target.path)
    with (
        os_errors_as_apply_errors(directory, "cannot check the state directory"),
        contextlib.ExitStack() as st,
    ):
        try:
            dfd = open_parent(target, create=False)
        except FileNotFoundError:
            return
        st.callback(os.close, dfd)
        check_private_dir(dfd, directory, what="state directory")


def _lock_target(state_dir: str, name: str = _LOCK_NAME) -> Target:
    if not state_dir.startswith("/"):
        raise UnsafePathError("state_dir must be an absolute path", path=state_dir)
    return cut_target(paths.expand_target(f"{state_dir}/{name}", home="/"), None)


@contextlib.contextmanager
def _held_lock(state_dir: str, name: str, *, blocking: bool) -> Iterator[bool]:
    target = _lock_target(state_dir, name)
    with contextlib.ExitStack() as stack:
        # Only acquiring is translated: an OSError from the caller's block is theirs.
        with os_errors_as_apply_errors(target.path, "cannot lock"):
            dfd = open_parent(target, create=True, dir_mode=0o700)
            stack.callback(os.close, dfd)
            check_private_dir(dfd, posixpath.dirname(target.path), what="state directory")
            try:
                fd = os.open(target.name, _LOCK_FLAGS, 0o600, dir_fd=dfd)
            except OSError as exc:
                _refuse_if_link(exc, dfd, target)
                raise
            stack.callback(os.close, fd)
            os.fchmod(fd, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                taken = False
            else:
                taken = True
                stack.callback(fcntl.flock, fd, fcntl.LOCK_UN)
        yield taken


def _inspect(
    target: Target, stack: contextlib.ExitStack, *, sweep: bool = False
) -> tuple[int, os.stat_result] | None:
    """Step (2) without creating: the directory's fd and the target's lstat, or None."""
    try:
        dfd = open_parent(target, create=False)
    except FileNotFoundError:
        return None
    stack.callback(os.close, dfd)
    if sweep:
        _sweep(dfd, target)  # what dead writers left in the directory just opened
    st = lstat_at(dfd, target.name)
    return None if st is None else (dfd, st)


def _keep_if_same(dfd: int, target: Target, content: bytes, file_mode: int) -> bool | None:
    """Step (3): None when the target must be (re)written, else whether its mode was fixed."""
    st = lstat_at(dfd, target.name)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError("a symlink sits at the target", path=target.path, symlink=True)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError("the target exists and is not a regular file", path=target.path)
    with contextlib.ExitStack() as stack:
        fd, now = _open_regular(dfd, target, st, stack)
        if _read_bounded(fd, len(content) + 1) != content:
            return None
        if stat.S_IMODE(now.st_mode) == file_mode:
            return False
        os.fchmod(fd, file_mode)
        return True


def _replace(dfd: int, name: str, content: bytes, file_mode: int) -> None:
    """Steps (4) and (5): a full, synced temp file renamed over `name`, or nothing."""
    tmp, fd = _create_temp(dfd, name, file_mode)  # (4)
    committed = False
    try:
        # Held until after the rename: an unlocked temp file is a dead writer's. Where the
        # filesystem has no flock, a sweeper cannot lock either, so it removes nothing.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        # open(2) applied the umask; the mode we promise is set explicitly.
        os.fchmod(fd, file_mode)
        _write_all(fd, content)
        os.fsync(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # (5)
        committed = True
    finally:
        if not committed:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
        os.close(fd)


def _create_temp(dfd: int, name: str, file_mode: int) -> tuple[str, int]:
    """A new, exclusively created temp file beside `name`: its name and write fd."""
    stem = os.fsdecode(os.fsencode(name)[:_TEMP_STEM_BYTES])
    for _ in range(8):
        tmp = f".{stem}.secret-agent.{os.urandom(6).hex()}.tmp"
        try:
            return tmp, os.open(tmp, _TEMP_FLAGS, file_mode, dir_fd=dfd)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", name)


def _sweep(dfd: int, target: Target) -> tuple[str, ...]:
    """Remove dead writers' temp files from directory `dfd`; never raises `OSError`."""
    directory = posixpath.dirname(target.path)
    try:
        with os.scandir(dfd) as entries:
            names = [e.name for e in entries if _is_temp_name(e.name)]
    except OSError:
        return ()
    removed: list[str] = []
    for name in names:
        with contextlib.suppress(OSError):
            if _remove_abandoned(dfd, name):
                removed.append(posixpath.join(directory, name))
    return tuple(removed)


def _is_temp_name(name: str) -> bool:
    found = _TEMP_NAME.fullmatch(name)
    return found is not None and len(os.fsencode(found[1])) <= _TEMP_STEM_BYTES


def _remove_abandoned(dfd: int, name: str) -> bool:
    """Unlink temp file `name` if it is ours, a regular file and no writer holds it."""
    me = os.geteuid()
    st = lstat_at(dfd, name)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid != me:
        return False  # lstat first: a FIFO or device is never opened
    with contextlib.ExitStack() as stack:
        fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        stack.callback(os.close, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer
        now = os.fstat(fd)
        if not (stat.S_ISREG(now.st_mode) and now.st_uid == me and _same_file(st, now)):
            return False
        if not _same_file(lstat_at(dfd, name), now):
            return False
        os.unlink(name, dir_fd=dfd)
    return True


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view) :]


def _read_bounded(fd: int, limit: int) -> bytes:
    """At most `limit` bytes from `fd`: never an unbounded read of a file we did not write."""
    chunks: list[bytes] = []
    while limit > 0 and (chunk := os.read(fd, min(limit, _CHUNK))):
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def _hash_bounded(fd: int) -> str:
    """The sha256 of the file behind `fd`, or "" when it is over `MAX_HASH_BYTES`."""
    digest = hashlib.sha256()
    seen = 0
    while chunk := os.read(fd, _CHUNK):
        seen += len(chunk)
        if seen > MAX_HASH_BYTES:
            return ""
        digest.update(chunk)
    return digest.hexdigest()


def _same_file(a: os.stat_result | None, b: os.stat_result) -> bool:
    return a is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _open_regular(
    dfd: int, target: Target, st: os.stat_result, stack: contextlib.ExitStack
) -> tuple[int, os.stat_result]:
    """Open for reading the regular file `st` describes (closed by `stack`), and its stat.

    `lstat` came first so a FIFO or device is never opened; the fd is checked to be that
    same inode, so a swap in between is refused rather than read.
    """
    try:
        fd = os.open(target.name, _READ_FLAGS, dir_fd=dfd)
    except OSError as exc:
        _refuse_if_link(exc, dfd, target)
        raise
    stack.callback(os.close, fd)
    now = os.fstat(fd)
    if not (stat.S_ISREG(now.st_mode) and _same_file(st, now)):
        raise UnsafePathError("the target changed while being checked", path=target.path)
    return fd, now


def _refuse_if_link(exc: OSError, dfd: int, target: Target) -> None:
    """Turn an `O_NOFOLLOW` failure on the target's name into the refusal it means."""
    if exc.errno == errno.ELOOP and is_link_at(dfd, target.name):
        raise UnsafePathError(
            "a symlink sits at the target", path=target.path, symlink=True
        ) from exc
