"""What the daemon watches on disk, and what a change there means.

No watching here (that is `daemon.watcher`): given the targets of the last pass and
the config, `watch_set` says which directories to watch, from those that exist now
(non-recursively: a secret's parent directory, never a whole home), and `classify`
turns a batch of watchfiles changes into what to do: restore a target someone
changed or removed, or reload the config / the token.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Flag, auto


class Reaction(Flag):
    NONE = 0
    RESTORE = auto()  # a file we deliver was changed or removed by someone else
    RELOAD = auto()  # the config file or the token file changed
    REWATCH = auto()  # a directory we wait for appeared: watch it itself now


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSet:
    """The files that matter, and the existing directories that hold them."""

    targets: frozenset[str]
    config_files: frozenset[str]
    dirs: tuple[str, ...]
    # Directories of config or token files that do not exist yet (say `coder login`
    # has not run): their nearest existing ancestor is watched in their place.
    awaited: frozenset[str] = frozenset()


def watch_set(targets: Iterable[str], config_files: Iterable[str]) -> WatchSet:
    """Directories to watch for these targets and config files (the ones that exist)."""
    wanted_targets = frozenset(t for t in targets if t)
    wanted_config = frozenset(c for c in config_files if c)
    dirs = {d for d in (os.path.dirname(p) for p in wanted_targets) if os.path.isdir(d)}
    awaited: set[str] = set()
    for path in wanted_config:
        if not os.path.isabs(path):
            continue  # never the working directory
        parent = os.path.dirname(path)
        if os.path.isdir(parent):
            dirs.add(parent)
            continue
        awaited.add(parent)
        ancestor = os.path.dirname(parent)
        while ancestor != os.path.dirname(ancestor) and not os.path.isdir(ancestor):
            ancestor = os.path.dirname(ancestor)
        dirs.add(ancestor)
    return WatchSet(
        targets=wanted_targets,
        config_files=wanted_config,
        dirs=tuple(sorted(dirs)),
        awaited=frozenset(awaited),
    )


def classify(changes: Iterable[tuple[object, str]], watched: WatchSet) -> Reaction:
    """What a batch of (change, path) events asks of the daemon."""
    reaction = Reaction.NONE
    for _change, path in changes:
        if path in watched.config_files:
            reaction |= Reaction.RELOAD
        if path in watched.targets:
            reaction |= Reaction.RESTORE
        if any(a == path or a.startswith(path + os.sep) for a in watched.awaited):
            # On the way to an awaited directory: watch deeper now, and reload in case
            # the file arrived before the new watch did.
            reaction |= Reaction.REWATCH | Reaction.RELOAD
    return reaction
