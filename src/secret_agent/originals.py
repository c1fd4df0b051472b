"""Originals: a file secret-agent did not write, kept beside the target it was at.

`sync.existing_files = "backup"` (docs/file-writing.md §7): before the first
write over a file that was there before us (a hand-made `~/.aws/credentials`, a
user's `~/.env`), `keep` gives that file a second name, `NAME.secret-agent-orig`, in
the same directory; when the target is released (the secret deleted, moved, pruned),
`put_back` returns it to its name. Both work on the directory's fd from the safe walk
of `dirwalk`, never through a symlink, and never overwrite anything:

- `keep` hard-links the target to the backup name (`link` fails rather than replace
  an existing name) and sets the backup to 0600. The original keeps its inode, bytes
  and owner; until the write that follows renames our file over the target, both
  names point at it, so a crash at any instant loses nothing. A backup name that
  already holds that same file (a write that failed after `keep`) is accepted; one
  that holds anything else is refused: never a second backup over the first.
- `put_back` links the backup to the target name (failing if something is there
  now) and only then unlinks the backup name.

Like `files`, it does no locking (`converge` holds the state lock) and turns
`OSError` into `ApplyError` at its boundary.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence

from secret_agent.dirwalk import Target, cut_target, lstat_at, open_parent
from secret_agent.errors import ApplyError, UnsafePathError, os_errors_as_apply_errors

BACKUP_MODE = 0o600


def keep(path: str, backup: str, *, roots: Sequence[str] | None) -> bool:
    """Give the regular file at `path` the second name `backup` (same directory).

    Returns False when there is nothing at `path` to keep.

    Raises:
        UnsafePathError: `backup` is not beside `path`, `path` is not a regular file, or
            `backup` holds another file.
        ApplyError: the OS refused (a filesystem without hard links, say).
    """
    target, spare = _pair(path, backup, roots)
    with os_errors_as_apply_errors(path, "cannot keep the original"), _directory(target) as dfd:
        here = lstat_at(dfd, target.name)
        if here is None:
            return False
        if not stat.S_ISREG(here.st_mode):
            raise UnsafePathError("the target exists and is not a regular file", path=path)
        try:
            os.link(target.name, spare, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            there = lstat_at(dfd, spare)
            if there is None or (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino):
                raise UnsafePathError(
                    f"{backup}, where the file there before secret-agent would be kept, is"
                    " taken; secret-agent never writes a second backup over the first:"
                    " move one of them away",
                    path=path,
                ) from None
        fd = os.open(spare, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            os.fchmod(fd, BACKUP_MODE)
        finally:
            os.close(fd)
        os.fsync(dfd)
    return True


def put_back(path: str, backup: str, *, mode: int = 0, roots: Sequence[str] | None) -> bool:
    """Return the file kept at `backup` to `path`, with the permission bits of `mode`
    it had before it was kept (0: left at `BACKUP_MODE`); False when there is no
    backup or something else is at `path` now (the backup then stays where it is).

    Raises:
        UnsafePathError: `backup` is not beside `path`, or is not a regular file.
        ApplyError: the OS refused.
    """
    target, spare = _pair(path, backup, roots)
    with os_errors_as_apply_errors(path, "cannot put the original back"), _directory(target) as dfd:
        kept = lstat_at(dfd, spare)
        if kept is None:
            return False
        if not stat.S_ISREG(kept.st_mode):
            raise UnsafePathError(f"{backup} is not a regular file; left as it is", path=path)
        try:
            os.link(spare, target.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            return False
        if mode:  # one inode, two names: the mode is the original's again under both
            fd = os.open(spare, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                os.fchmod(fd, stat.S_IMODE(mode))
            finally:
                os.close(fd)
        os.unlink(spare, dir_fd=dfd)
        os.fsync(dfd)
    return True


def _pair(path: str, backup: str, roots: Sequence[str] | None) -> tuple[Target, str]:
    target = cut_target(path, roots)
    if os.path.dirname(backup) != os.path.dirname(path) or "/" in os.path.basename(backup):
        raise UnsafePathError(f"the backup {backup} is not beside the target", path=path)
    return target, os.path.basename(backup)


@contextlib.contextmanager
def _directory(target: Target) -> Iterator[int]:
    try:
        dfd = open_parent(target, create=False)
    except FileNotFoundError:
        raise ApplyError("the directory is gone", path=target.path, errno=errno.ENOENT) from None
    try:
        yield dfd
    finally:
        os.close(dfd)
