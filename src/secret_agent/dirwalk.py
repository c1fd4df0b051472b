"""The safe directory walk: steps (1) and (2) of the algorithm in `files`.

`files` reads, writes and removes a target only relative to the fd of its directory;
this module gets that fd, so that no path string is trusted once a walk has begun:

1. `cut_target` takes a path already cleaned by `paths.expand_target`, checks that it
   lies lexically below one of the roots, and cuts it into the trusted start (the
   outermost containing root), the parents still to check, and the final name.
2. `open_parent` opens `/`, then each directory of the start, then each parent, one name
   at a time relative to the previous fd. Parents are opened with
   `O_DIRECTORY | O_NOFOLLOW`; a missing one is made with `dir_mode` when asked and then
   `fchmod`ed (mkdir applies the umask), and existing ones keep their mode. A symlinked
   parent is followed only when its fully resolved target lies inside the realpath'd
   roots; it is then re-opened by walking that resolved (link-free) path from `/`,
   again with `O_NOFOLLOW`, so a link swapped in after the check is refused instead of
   followed. Anything else is refused (`UnsafePathError(symlink=True)`). The root
   itself is configuration, so it is opened as configured, following links; with
   `roots=None` (a file the user configured locally) so is every directory on the way.

`check_private_dir` refuses an opened directory that is not the current user's alone
(the state directory). This module opens directories only: the target itself, its
bytes and its mode are `files`' business, and so are locking and turning `OSError` into
`ApplyError`, which this module raises untranslated. It knows paths, never secret
names, values or env formats. The fd `open_parent` returns is the caller's to close;
every other fd it opens is closed, on failure too.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from secret_agent import paths
from secret_agent.errors import UnsafePathError

__all__ = ["Target", "check_private_dir", "cut_target", "is_link_at", "lstat_at", "open_parent"]

_DIR_FOLLOW: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_NOFOLLOW: Final = _DIR_FOLLOW | os.O_NOFOLLOW


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A cleaned path cut for the walk: trusted start, checked parents, final name."""

    path: str
    start: tuple[str, ...]
    parents: tuple[str, ...]
    name: str
    real_roots: tuple[str, ...] | None


def cut_target(path: str, roots: Sequence[str] | None) -> Target:
    """Step (1): a clean absolute path, lexically below a root, cut for the walk.

    Raises:
        UnsafePathError: `path` is not a clean absolute path, or lies outside `roots`.
    """
    if not path.startswith("/") or paths.expand_target(path, home="/") != path:
        raise UnsafePathError("not a clean absolute path", path=path)
    names = paths.components(path)
    if roots is None:
        return Target(path=path, start=(), parents=names[:-1], name=names[-1], real_roots=None)
    start = paths.components(paths.check_within_roots(path, roots))
    real = tuple(os.path.realpath(root) for root in roots if root.startswith("/"))
    return Target(
        path=path, start=start, parents=names[len(start) : -1], name=names[-1], real_roots=real
    )


def open_parent(target: Target, *, create: bool, dir_mode: int = 0o700) -> int:
    """Step (2): the fd of the target's directory, which the caller must close.

    Raises:
        FileNotFoundError: a directory on the way is missing and `create` is false.
        UnsafePathError: a symlinked directory on the way leads outside the roots, or
            changed while being checked.
        OSError: the OS refused to open or make a directory.
    """
    if target.real_roots is None:
        return _descend(target.start + target.parents, _DIR_FOLLOW, create, dir_mode)
    # The root itself is configuration, so it is opened as configured (following links).
    fd = _descend(target.start, _DIR_FOLLOW, create, dir_mode)
    here = os.path.realpath("/" + "/".join(target.start))
    for name in target.parents:
        try:
            nxt, here = _step_checked(fd, here, name, target=target, create=create, mode=dir_mode)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def lstat_at(dfd: int, name: str) -> os.stat_result | None:
    """The lstat of `name` in directory `dfd`, or None when nothing is there."""
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def is_link_at(dfd: int, name: str) -> bool:
    """Whether `name` in directory `dfd` is a symlink."""
    st = lstat_at(dfd, name)
    return st is not None and stat.S_ISLNK(st.st_mode)


def not_private(st: os.stat_result, *, mode: str) -> tuple[str, str] | None:
    """Why a file or directory of ours is not ours alone, and the command that fixes it
    (`chown UID` or `chmod MODE`), or None: owned by the current user, no group or
    other bit. As ssh does with private keys; root included."""
    me = os.geteuid()
    bits = stat.S_IMODE(st.st_mode)
    if st.st_uid != me:
        return f"is owned by uid {st.st_uid}, not by this user (uid {me})", f"chown {me}"
    if bits & 0o077:
        loose = "readable" if bits & 0o044 else "writable" if bits & 0o022 else "accessible"
        return f"is {loose} by others (mode {bits:04o})", f"chmod {mode}"
    return None


def check_private_dir(dfd: int, path: str, *, what: str) -> None:
    """Refuse directory `dfd` (at `path`, a `what` such as "state directory") unless it
    is owned by the current user, has no group or other permission bit, and holds no
    symlink. Root included: root may read anything, but others must not.

    Raises:
        UnsafePathError: naming the `chown` or `chmod 700` that fixes it, or the symlink.
        OSError: the OS refused to stat or list it.
    """
    found = not_private(os.fstat(dfd), mode="700")
    if found is None:
        with os.scandir(dfd) as entries:
            links = sorted(e.name for e in entries if e.is_symlink())
        if not links:
            return
        raise UnsafePathError(
            f"a symlink sits in the {what}, and is never followed: remove it",
            path=posixpath.join(path, links[0]),
            symlink=True,
        )
    problem, fix = found
    raise UnsafePathError(f"the {what} {problem}; run `{fix} {_quoted(path)}`", path=path)


def _quoted(path: str) -> str:
    import shlex  # only on the error path: exec's fast path never pays for it

    return shlex.quote(path)


def _descend(names: Sequence[str], flags: int, create: bool, dir_mode: int) -> int:
    """Open `/` then each of `names` with `flags`, closing every fd but the last."""
    fd = os.open("/", _DIR_FOLLOW)
    for name in names:
        try:
            nxt = _open_or_make(fd, name, flags, create, dir_mode)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def _open_or_make(dfd: int, name: str, flags: int, create: bool, dir_mode: int) -> int:
    """Open directory `name` in `dfd`, making it first when missing and `create`."""
    try:
        return os.open(name, flags, dir_fd=dfd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, dir_mode, dir_fd=dfd)
    except FileExistsError:
        return os.open(name, flags, dir_fd=dfd)  # made by someone else meanwhile
    fd = os.open(name, flags, dir_fd=dfd)
    try:
        # mkdir(2) applied the umask; the mode we promise is set explicitly.
        os.fchmod(fd, dir_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _step_checked(
    dfd: int, here: str, name: str, *, target: Target, create: bool, mode: int
) -> tuple[int, str]:
    """Open directory `name` in `dfd` (real path `here`), following a link only inward.

    Returns the new fd and its real path.
    """
    try:
        return _open_or_make(dfd, name, _DIR_NOFOLLOW, create, mode), posixpath.join(here, name)
    except OSError as exc:
        # O_NOFOLLOW | O_DIRECTORY on a symlink fails with ELOOP or ENOTDIR.
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not is_link_at(dfd, name):
            raise
    link = posixpath.join(here, name)
    resolved = os.path.realpath(link)
    if not any(paths.is_within(resolved, root) for root in target.real_roots or ()):
        raise UnsafePathError(
            f"symlinked directory {link} leads outside allowed_roots (to {resolved})",
            path=target.path,
            symlink=True,
        )
    # Re-walk what was checked from `/`, following nothing: realpath() left no link in
    # `resolved`, so a link found now was swapped in after the check, and is refused.
    try:
        return _descend(paths.components(resolved), _DIR_NOFOLLOW, create, mode), resolved
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise UnsafePathError(
            f"symlinked directory {link} is not a directory (or changed while being checked)",
            path=target.path,
            symlink=True,
        ) from exc
