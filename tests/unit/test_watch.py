"""watch: which directories the daemon watches, and what a batch of changes asks of it.

Directories are real ones under `tmp_path` (watch_set checks they exist); changes are
`watchfiles.Change` values paired with paths, as watchfiles yields them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from watchfiles import Change

from secret_agent.watch import Reaction, WatchSet, classify, watch_set


def test_watch_set_keeps_existing_parent_dirs_sorted_and_unique(tmp_path: Path) -> None:
    """dirs holds each existing parent directory once, in sorted order."""
    for name in ("a", "b", "d"):
        (tmp_path / name).mkdir()
    targets = [
        str(tmp_path / "d/env"),
        str(tmp_path / "a/one"),
        str(tmp_path / "b/three"),
        str(tmp_path / "a/two"),  # same parent as a/one
        str(tmp_path / "c/missing"),  # parent does not exist
    ]
    config = [str(tmp_path / "b/config.toml"), str(tmp_path / "d/token")]
    ws = watch_set(targets, config)
    assert ws.dirs == (str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "d"))


def test_watch_set_never_watches_the_files_own_names(tmp_path: Path) -> None:
    """A watched entry is a parent directory, never the file itself nor a grandparent."""
    nested = tmp_path / "home/.config/gh"
    nested.mkdir(parents=True)
    (nested / "hosts.yml").write_text("x")
    ws = watch_set([str(nested / "hosts.yml")], [])
    assert ws.dirs == (str(nested),)


def test_watch_set_ignores_empty_strings(tmp_path: Path) -> None:
    """Empty target or config paths (an unset token_file) are dropped everywhere."""
    target = str(tmp_path / "secret")
    config = str(tmp_path / "config.toml")
    ws = watch_set(["", target, ""], [config, ""])
    assert ws.targets == frozenset({target})
    assert ws.config_files == frozenset({config})
    assert ws.dirs == (str(tmp_path),)


def test_watch_set_with_nothing_watches_nothing() -> None:
    """No targets and no config (or only empty strings) watch no directory at all."""
    assert watch_set([], []) == WatchSet(targets=frozenset(), config_files=frozenset(), dirs=())
    assert watch_set([""], [""]).dirs == ()


def test_watch_set_skips_a_parent_that_is_a_file(tmp_path: Path) -> None:
    """A target whose 'parent' is a regular file has no directory to watch."""
    (tmp_path / "plain").write_text("not a dir")
    ws = watch_set([str(tmp_path / "plain/secret")], [])
    assert ws.dirs == ()
    assert ws.targets == frozenset({str(tmp_path / "plain/secret")})


def test_watch_set_skips_a_relative_path() -> None:
    """A bare relative name has no parent directory to watch (never the cwd)."""
    assert watch_set(["secret"], ["config.toml"]).dirs == ()


def test_watch_set_accepts_generators(tmp_path: Path) -> None:
    """Targets and config files may be any iterable, consumed once."""
    ws = watch_set((str(tmp_path / n) for n in ("x", "y")), iter([str(tmp_path / "c")]))
    assert ws.targets == frozenset({str(tmp_path / "x"), str(tmp_path / "y")})
    assert ws.dirs == (str(tmp_path),)


# -- classify ----------------------------------------------------------------

ROOT = "/home/u"
TARGET = f"{ROOT}/.config/gh/hosts.yml"
OTHER_TARGET = f"{ROOT}/.ssh/id_ed25519"
CONFIG = f"{ROOT}/.config/secret-agent/config.toml"
TOKEN = f"{ROOT}/.config/secret-agent/token"
WATCHED = WatchSet(
    targets=frozenset({TARGET, OTHER_TARGET}),
    config_files=frozenset({CONFIG, TOKEN}),
    dirs=(),
)
BOTH = Reaction.RESTORE | Reaction.RELOAD

CLASSIFY = [
    pytest.param([(Change.modified, TARGET)], Reaction.RESTORE, id="target-modified"),
    pytest.param([(Change.deleted, OTHER_TARGET)], Reaction.RESTORE, id="target-deleted"),
    pytest.param([(Change.added, TARGET)], Reaction.RESTORE, id="target-added"),
    pytest.param([(Change.modified, CONFIG)], Reaction.RELOAD, id="config-modified"),
    pytest.param([(Change.deleted, TOKEN)], Reaction.RELOAD, id="token-deleted"),
    pytest.param([(Change.modified, TARGET), (Change.added, TOKEN)], BOTH, id="target-and-token"),
    pytest.param(
        [(Change.modified, CONFIG), (Change.deleted, TARGET)], BOTH, id="config-then-target"
    ),
    pytest.param(
        [(Change.modified, f"{ROOT}/.config/gh/config.yml")], Reaction.NONE, id="sibling-file"
    ),
    pytest.param(
        [(Change.added, f"{ROOT}/.config/gh/.hosts.yml.secret-agent.3fa9c1d2e4b5.tmp")],
        Reaction.NONE,
        id="temp-beside-target",
    ),
    pytest.param(
        [(Change.added, f"{ROOT}/.config/secret-agent/.token.secret-agent.abc.tmp")],
        Reaction.NONE,
        id="temp-beside-token",
    ),
    pytest.param(
        [(Change.deleted, f"{ROOT}/.config/gh/.hosts.yml.secret-agent.abc.tmp")],
        Reaction.NONE,
        id="temp-renamed-away",
    ),
    pytest.param([(Change.modified, f"{ROOT}/.config/gh")], Reaction.NONE, id="parent-dir"),
    pytest.param([(Change.modified, TARGET + ".bak")], Reaction.NONE, id="target-prefix"),
    pytest.param([(Change.modified, TARGET.upper())], Reaction.NONE, id="case-differs"),
    pytest.param([], Reaction.NONE, id="empty-batch"),
    pytest.param(
        [
            (Change.added, f"{ROOT}/.config/gh/.hosts.yml.secret-agent.abc.tmp"),
            (Change.modified, TARGET),
            (Change.deleted, f"{ROOT}/.config/gh/.hosts.yml.secret-agent.abc.tmp"),
        ],
        Reaction.RESTORE,
        id="foreign-atomic-replace",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), CLASSIFY)
def test_classify(changes: list[tuple[Change, str]], expected: Reaction) -> None:
    """A target change asks for RESTORE, a config or token change for RELOAD, others NONE."""
    assert classify(changes, WATCHED) == expected


def test_classify_on_a_real_watch_set(tmp_path: Path) -> None:
    """classify agrees with a WatchSet built by watch_set from real paths."""
    target, config = str(tmp_path / "secret"), str(tmp_path / "config.toml")
    ws = watch_set([target], [config, ""])
    assert classify([(Change.modified, target)], ws) == Reaction.RESTORE
    assert classify([(Change.modified, config)], ws) == Reaction.RELOAD
    assert classify([(Change.added, str(tmp_path / ".secret.secret-agent.abc.tmp"))], ws) == (
        Reaction.NONE
    )
    # The dropped empty string never matches an event path either.
    assert classify([(Change.modified, "")], ws) == Reaction.NONE


def test_a_path_in_both_sets_asks_for_both() -> None:
    """A file that is both a target and a config file asks for RESTORE and RELOAD."""
    ws = WatchSet(targets=frozenset({TOKEN}), config_files=frozenset({TOKEN}), dirs=())
    assert classify([(Change.modified, TOKEN)], ws) == BOTH


def test_a_missing_token_directory_is_awaited_from_its_nearest_ancestor(tmp_path: Path) -> None:
    """Before `coder login`, the session file's directory is awaited: its existing
    ancestor is watched, and a change on the way there asks for a rewatch and reload."""
    token = tmp_path / ".config/coderv2/session"
    ws = watch_set([], [str(token)])
    assert ws.dirs == (str(tmp_path),)
    assert ws.awaited == frozenset({str(token.parent)})
    created = classify([(Change.added, str(tmp_path / ".config"))], ws)
    assert Reaction.REWATCH in created
    assert Reaction.RELOAD in created
    assert classify([(Change.added, str(tmp_path / "other"))], ws) == Reaction.NONE
    token.parent.mkdir(parents=True)
    assert watch_set([], [str(token)]).dirs == (str(token.parent),)
