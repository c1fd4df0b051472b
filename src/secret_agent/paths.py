"""Where a secret's `file_path` points, decided from the string alone.

`expand_target` validates and then cleans: `~/` against `sync.home`, absolute paths as
they are, everything else refused with the rule it broke. `..` and `.` are resolved
lexically, so the path that is checked against `allowed_roots` is exactly the path that
`files` walks and writes; symlinked directories on the way are `files`' concern, since
only the filesystem knows them.

This module must not touch the filesystem, the clock or the environment: it is pure
string logic, and every function here is safe to call from `plan`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from secret_agent.errors import UnsafePathError

# PATH_MAX and NAME_MAX on Linux, in bytes of the filesystem encoding.
MAX_PATH_BYTES: Final = 4096
MAX_NAME_BYTES: Final = 255

# How much of an over-long path an error message repeats.
_SHOWN_CHARS: Final = 80


def expand_target(file_path: str, *, home: str) -> str:
    """Return the clean absolute path `file_path` names, `~/` meaning `home`.

    Raises:
        UnsafePathError: `file_path` is empty, relative, `~` alone or `~user/...`, holds
            a NUL byte, cannot be encoded, is longer than `MAX_PATH_BYTES` (or has a
            component longer than `MAX_NAME_BYTES`), ends with `/`, `.` or `..` (a file
            is needed, not a directory), or `home` is not absolute.
    """
    _check_text(file_path)
    if file_path.startswith("~/"):
        _check_text(home)
        if not home.startswith("/"):
            raise UnsafePathError("home must be an absolute path", path=_shown(home))
        joined = f"{home}/{file_path[2:]}"
    elif file_path.startswith("/"):
        joined = file_path
    elif file_path.startswith("~"):
        raise UnsafePathError(
            "must start with '~/' or '/' ('~' alone and '~user/' are not supported)",
            path=_shown(file_path),
        )
    else:
        raise UnsafePathError(
            "must be absolute or start with '~/' (relative paths are refused)",
            path=_shown(file_path),
        )
    if file_path.endswith("/"):
        raise UnsafePathError(
            "ends with '/': a file is needed, not a directory", path=_shown(file_path)
        )
    if file_path.rsplit("/", 1)[-1] in (".", ".."):
        raise UnsafePathError(
            "ends with '.' or '..': a file is needed, not a directory", path=_shown(file_path)
        )
    clean = "/" + "/".join(components(joined))
    _check_text(clean)
    return clean


def components(path: str) -> tuple[str, ...]:
    """The names of an absolute path from `/` down, `.` dropped and `..` resolved lexically.

    `..` at the top stays at `/`, as the kernel does. A relative path has no components
    here; callers check for the leading `/` first.
    """
    if not path.startswith("/"):
        return ()
    parts: list[str] = []
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if parts:
                parts.pop()
            continue
        parts.append(name)
    return tuple(parts)


def is_within(path: str, root: str) -> bool:
    """True when `path` is `root` or lies below it, comparing whole components.

    Lexical only: `/home/u2` is not within `/home/u`, and `/home/u/../v` is not within
    `/home/u`. Relative paths are within nothing.
    """
    if not (path.startswith("/") and root.startswith("/")):
        return False
    inner, outer = components(path), components(root)
    return inner[: len(outer)] == outer


def check_within_roots(path: str, roots: Sequence[str]) -> str:
    """Return the outermost root (as given) that `path` lies strictly below.

    The outermost root is returned so that `files` walks, and checks, every directory
    between it and the target.

    Raises:
        UnsafePathError: `path` lies below none of `roots` (it being a root itself does
            not count: a file cannot replace a root directory).
    """
    inside = [
        root for root in roots if is_within(path, root) and components(path) != components(root)
    ]
    if not inside:
        listed = ", ".join(roots) if roots else "none"
        raise UnsafePathError(f"outside allowed_roots ({listed})", path=_shown(path))
    return min(inside, key=lambda root: len(components(root)))


def _check_text(path: str) -> None:
    """Refuse what no filesystem call can take: empty, NUL, unencodable, over-long."""
    if not path:
        raise UnsafePathError("empty path", path=path)
    if "\x00" in path:
        raise UnsafePathError("contains a NUL byte", path=_shown(path))
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError as exc:
        raise UnsafePathError("cannot be encoded for the filesystem", path=_shown(path)) from exc
    if len(encoded) > MAX_PATH_BYTES:
        raise UnsafePathError(
            f"longer than {MAX_PATH_BYTES} bytes ({len(encoded)})", path=_shown(path)
        )
    if any(len(name) > MAX_NAME_BYTES for name in encoded.split(b"/")):
        raise UnsafePathError(f"has a name longer than {MAX_NAME_BYTES} bytes", path=_shown(path))


def _shown(path: str) -> str:
    """`path` as an error message may print it: NUL made visible, length capped."""
    text = path.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > _SHOWN_CHARS:
        return text[:_SHOWN_CHARS] + "..."
    return text
