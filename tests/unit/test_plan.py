"""`make_plan` is pure: the disk is a dict here, and every decision is checked."""

from __future__ import annotations

import dataclasses

import pytest

from secret_agent.actions import ForgetFile, KeepFile, RemoveFile, WriteFile
from secret_agent.errors import DuplicateTargetError, PathRefusedError, SymlinkRefusedError
from secret_agent.files import sha256_hex
from secret_agent.ledger import EMPTY, Ledger, LedgerEntry
from secret_agent.model import DesiredSecret, DesiredState, FileState, Observed
from secret_agent.plan import Targets, make_plan
from secret_agent.redact import Secret

HOME = "/home/dev"
TARGETS = Targets(home=HOME, roots=(HOME,), env_path=f"{HOME}/.env")


def secret(name: str, value: str, *, file_path: str = "", env_name: str = "") -> DesiredSecret:
    return DesiredSecret(name=name, env_name=env_name, file_path=file_path, value=Secret(value))


class Disk:
    """What `observe` would report: path -> (bytes, mode) or a symlink marker."""

    def __init__(
        self, files: dict[str, tuple[bytes, int]] | None = None, symlinks: set[str] = frozenset()
    ) -> None:  # type: ignore[assignment]
        self.files = files or {}
        self.symlinks = symlinks

    def observe(self, path: str) -> Observed:
        if path in self.symlinks:
            return Observed(path=path, exists=True, is_symlink=True)
        if path not in self.files:
            return Observed(path=path, exists=False)
        data, mode = self.files[path]
        return Observed(path=path, exists=True, is_file=True, sha=sha256_hex(data), mode=mode)

    def apply(self, plan_files: tuple[object, ...], env: object) -> Ledger:
        """Do what apply would, and return the ledger it would record."""
        entries: list[LedgerEntry] = []
        for a in plan_files:
            if isinstance(a, WriteFile):
                self.files[a.path] = (a.content.reveal().encode(), 0o600)
            elif isinstance(a, RemoveFile):
                del self.files[a.path]
            if isinstance(a, WriteFile | KeepFile):
                entries.append(LedgerEntry(path=a.path, secret=a.secret, sha=a.sha))
        if env is not None:
            if not env.unchanged:  # type: ignore[attr-defined]
                self.files[env.path] = (env.content.reveal().encode(), 0o600)  # type: ignore[attr-defined]
            entries.append(LedgerEntry(path=env.path, secret="", sha=env.sha))  # type: ignore[attr-defined]
        return Ledger.of(entries)


def plan(desired: list[DesiredSecret], disk: Disk, ledger: Ledger = EMPTY, **kw: object):
    targets = dataclasses.replace(TARGETS, **kw)  # type: ignore[arg-type]
    return make_plan(
        DesiredState(secrets=tuple(desired)),
        ledger,
        targets=targets,
        observe_secret=disk.observe,
        observe_local=disk.observe,
    )


def test_new_secret_is_written_to_its_expanded_path() -> None:
    """`~/x` lands under sync.home and is written."""
    p = plan([secret("a", "v1", file_path="~/a/token")], Disk())
    assert [(type(a), a.path) for a in p.files] == [(WriteFile, f"{HOME}/a/token")]


def test_same_bytes_and_mode_are_kept_and_wrong_mode_only_fixed() -> None:
    """Identical content is never rewritten; a loose mode is fixed without a rewrite."""
    disk = Disk({f"{HOME}/a": (b"v1", 0o600), f"{HOME}/b": (b"v2", 0o644)})
    ours = Ledger.of(
        LedgerEntry(path=f"{HOME}/{name}", secret=name, sha=sha256_hex(value))
        for name, value in (("a", b"v1"), ("b", b"v2"))
    )
    desired = [secret("a", "v1", file_path="~/a"), secret("b", "v2", file_path="~/b")]
    p = plan(desired, disk, ours)
    kinds = {a.path: a for a in p.files}
    assert isinstance(kinds[f"{HOME}/a"], KeepFile)
    b = kinds[f"{HOME}/b"]
    assert isinstance(b, WriteFile)
    assert b.mode_only


@pytest.mark.parametrize(
    ("file_path", "error"),
    [
        pytest.param("~/../etc/passwd", PathRefusedError, id="dotdot-escape"),
        pytest.param("/etc/passwd", PathRefusedError, id="absolute-outside"),
        pytest.param("relative/x", PathRefusedError, id="relative"),
        pytest.param("~/link", SymlinkRefusedError, id="symlink-at-target"),
        pytest.param("~/.env", DuplicateTargetError, id="the-env-file"),
    ],
)
def test_refusals_name_the_secret_and_spare_the_others(file_path: str, error: type) -> None:
    """A refused secret is reported by name; the other secret is still planned."""
    disk = Disk(symlinks={f"{HOME}/link"})
    p = plan([secret("bad", "x", file_path=file_path), secret("ok", "y", file_path="~/ok")], disk)
    assert [type(r) for r in p.refused] == [error]
    assert p.refused[0].secret == "bad"
    assert [a.path for a in p.files] == [f"{HOME}/ok"]


def test_duplicate_target_after_expansion_refuses_the_second_by_name() -> None:
    """`~/x` and `/home/dev/x` are one file: the first by name wins."""
    p = plan([secret("a", "1", file_path="~/x"), secret("b", "2", file_path=f"{HOME}/x")], Disk())
    assert [a.secret for a in p.files if isinstance(a, WriteFile)] == ["a"]
    assert [(type(r), r.secret) for r in p.refused] == [(DuplicateTargetError, "b")]


def test_gone_secret_removed_only_if_unchanged_else_reported() -> None:
    """Prune removes our unchanged file, keeps an edited one, forgets a vanished one."""
    ours, edited, vanished = f"{HOME}/ours", f"{HOME}/edited", f"{HOME}/vanished"
    disk = Disk({ours: (b"v", 0o600), edited: (b"user edit", 0o600)})
    ledger = Ledger.of(
        [
            LedgerEntry(path=ours, secret="s1", sha=sha256_hex(b"v")),
            LedgerEntry(path=edited, secret="s2", sha=sha256_hex(b"v")),
            LedgerEntry(path=vanished, secret="s3", sha=sha256_hex(b"v")),
        ]
    )
    p = plan([], disk, ledger)
    by_path = {a.path: a for a in p.files}
    assert isinstance(by_path[ours], RemoveFile)
    assert isinstance(by_path[edited], ForgetFile)
    assert by_path[edited].state is FileState.FOREIGN
    assert by_path[vanished].state is FileState.REMOVED  # type: ignore[union-attr]
    kept = plan([], disk, ledger, prune=False)
    assert {a.state for a in kept.files} == {FileState.LEFT}  # type: ignore[union-attr]


def test_env_file_unchanged_when_bytes_and_mode_match() -> None:
    """The env file is rendered, and left alone when the disk already holds it."""
    desired = [secret("a", "v", env_name="A")]
    disk = Disk()
    first = plan(desired, disk)
    assert first.env_file is not None
    assert not first.env_file.unchanged
    ledger = disk.apply(first.files, first.env_file)
    assert plan(desired, disk, ledger).env_file.unchanged  # type: ignore[union-attr]


def test_applying_a_plan_then_planning_again_changes_nothing() -> None:
    """Idempotence: after applying a plan, the next plan touches nothing."""
    desired = [
        secret(f"s{i}", f"value {i}", file_path=f"~/d/s{i}", env_name=f"S{i}") for i in range(5)
    ]
    disk = Disk({f"{HOME}/d/s0": (b"stale", 0o644)})
    first = plan(desired, disk)
    assert first.changes == 6
    ledger = disk.apply(first.files, first.env_file)
    assert plan(desired, disk, ledger).changes == 0


@pytest.mark.parametrize("policy", ["backup", "refuse", "replace"])
def test_a_file_not_ours_holding_the_very_bytes_follows_existing_files(policy: str) -> None:
    """No ledger entry, same bytes: adopting it would delete the user's file with the
    secret, so it is kept aside (or refused) like any file we did not write."""
    env = b"# Generated by secret-agent; do not edit.\nA='v1'\n"
    disk = Disk({f"{HOME}/a": (b"v1", 0o600), f"{HOME}/.env": (env, 0o600)})
    desired = [secret("a", "v1", file_path="~/a", env_name="A")]
    p = plan(desired, disk, existing_files=policy)
    actions = {a.path: a for a in p.files}
    if policy == "replace":
        assert isinstance(actions[f"{HOME}/a"], KeepFile)
        assert p.env_file is not None and p.env_file.unchanged
    elif policy == "backup":
        write = actions[f"{HOME}/a"]
        assert isinstance(write, WriteFile) and write.make_backup
        assert p.env_file is not None and p.env_file.make_backup and not p.env_file.unchanged
    else:
        assert f"{HOME}/a" not in actions
        assert [r.secret for r in p.refused] == ["a"]
        assert p.env_file is None and "did not write" in p.env_refused
