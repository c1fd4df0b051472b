"""files: atomic writes, modes, symlink refusals, removal and the lock, on a real disk."""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from secret_agent.errors import ApplyError, UnsafePathError
from secret_agent.files import (
    MAX_HASH_BYTES,
    WriteResult,
    check_state_dir,
    lock_exclusive,
    observe,
    read_private,
    remove_if_unchanged,
    sha256_hex,
    write_atomic,
)
from secret_agent.model import FileState

CANARY = b"canary-files-7f3a9c\nsecond line\x00binary\xff"
OTHER = b"a different value entirely"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An allowed root with a sibling `outside` directory that must never be touched."""
    root = tmp_path / "home"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    return root


@pytest.fixture(params=[0o000, 0o077, 0o022], ids=["umask000", "umask077", "umask022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a given umask and restore the previous one."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def leftovers(directory: Path) -> list[str]:
    """Temp files of ours left in `directory`."""
    return sorted(p.name for p in directory.iterdir() if ".secret-agent." in p.name)


def write(path: Path, content: bytes, home: Path) -> WriteResult:
    return write_atomic(str(path), content, roots=[str(home)])


class TestWriteAtomic:
    def test_new_file_has_exact_bytes_and_modes(self, home: Path, umask: int) -> None:
        """A new file holds exactly the content, mode 0600, in new 0700 directories."""
        target = home / "a" / "b" / "secret"
        result = write(target, CANARY, home)
        assert target.read_bytes() == CANARY
        assert mode_of(target) == 0o600
        assert mode_of(home / "a") == 0o700
        assert mode_of(home / "a" / "b") == 0o700
        assert result == WriteResult(
            sha=sha256_hex(CANARY), written=True, mode_fixed=False, bytes_written=len(CANARY)
        )
        assert leftovers(target.parent) == []

    def test_configured_modes_are_applied(self, home: Path, umask: int) -> None:
        """file_mode and dir_mode are what the files and new directories get."""
        target = home / "d" / "f"
        write_atomic(str(target), b"x", roots=[str(home)], file_mode=0o640, dir_mode=0o750)
        assert mode_of(target) == 0o640
        assert mode_of(home / "d") == 0o750

    def test_existing_directory_mode_is_left_alone(self, home: Path) -> None:
        """A directory that already exists keeps its mode."""
        (home / ".config").mkdir(mode=0o755)
        os.chmod(home / ".config", 0o755)
        write(home / ".config" / "tok", b"x", home)
        assert mode_of(home / ".config") == 0o755

    def test_loose_existing_file_is_replaced_with_0600(self, home: Path) -> None:
        """Writing over a 0644 file with other bytes leaves a 0600 file."""
        target = home / "secret"
        target.write_bytes(OTHER)
        target.chmod(0o644)
        result = write(target, CANARY, home)
        assert result.written
        assert target.read_bytes() == CANARY
        assert mode_of(target) == 0o600

    def test_identical_write_touches_nothing(self, home: Path) -> None:
        """Writing the same bytes again changes neither mtime nor inode."""
        target = home / "secret"
        write(target, CANARY, home)
        before = target.stat()
        result = write(target, CANARY, home)
        after = target.stat()
        assert result == WriteResult(
            sha=sha256_hex(CANARY), written=False, mode_fixed=False, bytes_written=0
        )
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    def test_identical_bytes_with_loose_mode_only_fix_the_mode(self, home: Path) -> None:
        """Same bytes at 0644: the mode is fixed in place, the inode and mtime stay."""
        target = home / "secret"
        target.write_bytes(CANARY)
        target.chmod(0o644)
        before = target.stat()
        result = write(target, CANARY, home)
        after = target.stat()
        assert result.mode_fixed
        assert not result.written
        assert mode_of(target) == 0o600
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    def test_longer_existing_file_with_same_prefix_is_rewritten(self, home: Path) -> None:
        """A file that starts with the content but has more bytes is not 'identical'."""
        target = home / "secret"
        target.write_bytes(CANARY + b"tail")
        assert write(target, CANARY, home).written
        assert target.read_bytes() == CANARY

    def test_empty_content(self, home: Path) -> None:
        """Empty content gives an empty file, and an empty file is left alone."""
        target = home / "empty"
        assert write(target, b"", home).written
        assert target.read_bytes() == b""
        assert not write(target, b"", home).written

    def test_long_name_gets_a_temp_name_within_name_max(self, home: Path) -> None:
        """A 255-byte file name still gets a temp file (its name is shortened)."""
        target = home / ("n" * 255)
        assert write(target, CANARY, home).written
        assert target.read_bytes() == CANARY

    def test_roots_none_writes_anywhere_but_keeps_the_rules(self, tmp_path: Path) -> None:
        """roots=None skips the root check only: modes and creation still apply."""
        target = tmp_path / "state" / "env"
        with_umask = os.umask(0o022)
        try:
            write_atomic(str(target), CANARY, roots=None)
        finally:
            os.umask(with_umask)
        assert target.read_bytes() == CANARY
        assert mode_of(target) == 0o600
        assert mode_of(target.parent) == 0o700


class TestRefusals:
    @pytest.mark.parametrize("inside", [False, True], ids=["to-outside", "to-inside"])
    def test_symlink_at_target_is_refused(self, home: Path, inside: bool) -> None:
        """A symlink at the target is refused whether it points in or out; its target
        keeps its bytes and the link stays a link."""
        pointed = (home / "real") if inside else (home.parent / "outside" / "real")
        pointed.write_bytes(OTHER)
        link = home / "secret"
        link.symlink_to(pointed)
        with pytest.raises(UnsafePathError, match="symlink") as info:
            write(link, CANARY, home)
        assert info.value.symlink is True
        assert pointed.read_bytes() == OTHER
        assert link.is_symlink()
        assert leftovers(home) == []

    def test_dangling_symlink_at_target_is_refused(self, home: Path) -> None:
        """A dangling symlink at the target is refused and nothing is created behind it."""
        link = home / "secret"
        link.symlink_to(home.parent / "outside" / "planted")
        with pytest.raises(UnsafePathError) as info:
            write(link, CANARY, home)
        assert info.value.symlink is True
        assert not (home.parent / "outside" / "planted").exists()

    def test_symlinked_parent_outside_roots_is_refused(self, home: Path) -> None:
        """A symlinked directory leading outside the roots is refused; nothing is
        created outside."""
        outside = home.parent / "outside"
        (home / ".config").symlink_to(outside)
        with pytest.raises(UnsafePathError, match="outside allowed_roots") as info:
            write(home / ".config" / "sub" / "tok", CANARY, home)
        assert info.value.symlink is True
        assert list(outside.iterdir()) == []

    def test_symlinked_parent_inside_roots_is_followed(self, home: Path) -> None:
        """A dotfiles-style symlinked ~/.config that stays inside the roots works, and
        the file lands in the real directory."""
        real = home / "dotfiles" / "config"
        real.mkdir(parents=True)
        (home / ".config").symlink_to("dotfiles/config")
        write(home / ".config" / "gh" / "hosts", CANARY, home)
        assert (real / "gh" / "hosts").read_bytes() == CANARY
        assert mode_of(real / "gh") == 0o700
        assert observe(str(home / ".config" / "gh" / "hosts"), roots=[str(home)]).is_file

    def test_symlinked_parent_into_a_second_root_is_followed(self, home: Path) -> None:
        """A link from one root into another allowed root is inside the roots."""
        other = home.parent / "outside"
        (home / "link").symlink_to(other)
        write_atomic(str(home / "link" / "f"), CANARY, roots=[str(home), str(other)])
        assert (other / "f").read_bytes() == CANARY

    def test_root_that_is_itself_a_symlink_works(self, tmp_path: Path) -> None:
        """A root reached through a symlink (Fedora's /home -> /var/home) is opened as
        configured, and a link inside it that stays inside is followed."""
        (tmp_path / "var-home" / "dotfiles").mkdir(parents=True)
        (tmp_path / "home").symlink_to("var-home")
        (tmp_path / "var-home" / ".config").symlink_to("dotfiles")
        root = str(tmp_path / "home")
        write_atomic(root + "/.config/tok", CANARY, roots=[root])
        assert (tmp_path / "var-home" / "dotfiles" / "tok").read_bytes() == CANARY

    @pytest.mark.parametrize("kind", ["loop", "to-a-file"])
    def test_symlinked_parent_that_is_no_directory_is_refused(self, home: Path, kind: str) -> None:
        """A symlink loop, or a link to a file, in place of a directory is refused."""
        if kind == "loop":
            (home / "a").symlink_to("b")
            (home / "b").symlink_to("a")
        else:
            (home / "file").write_bytes(OTHER)
            (home / "a").symlink_to("file")
        with pytest.raises(UnsafePathError) as info:
            write(home / "a" / "secret", CANARY, home)
        assert info.value.symlink is True

    def test_symlinked_parent_allowed_with_roots_none(self, tmp_path: Path) -> None:
        """With roots=None (a locally configured file) symlinked parents are followed."""
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        write_atomic(str(tmp_path / "link" / "env"), CANARY, roots=None)
        assert (tmp_path / "real" / "env").read_bytes() == CANARY

    def test_symlink_at_target_refused_with_roots_none(self, tmp_path: Path) -> None:
        """roots=None still refuses a symlink at the target itself."""
        (tmp_path / "real").write_bytes(OTHER)
        (tmp_path / "env").symlink_to(tmp_path / "real")
        with pytest.raises(UnsafePathError):
            write_atomic(str(tmp_path / "env"), CANARY, roots=None)
        assert (tmp_path / "real").read_bytes() == OTHER

    @pytest.mark.parametrize(
        "suffix", ["/../outside/x", "/a/../../outside/x"], ids=["dotdot", "deep-dotdot"]
    )
    def test_dotdot_escape_is_refused(self, home: Path, suffix: str) -> None:
        """An unclean path is refused before any directory is opened."""
        with pytest.raises(UnsafePathError):
            write_atomic(str(home) + suffix, CANARY, roots=[str(home)])
        assert list((home.parent / "outside").iterdir()) == []

    def test_cleaned_path_outside_roots_is_refused(self, home: Path) -> None:
        """A clean path outside the roots is refused and not created."""
        target = home.parent / "outside" / "x"
        with pytest.raises(UnsafePathError, match="outside allowed_roots"):
            write(target, CANARY, home)
        assert not target.exists()

    def test_directory_at_target_is_refused(self, home: Path) -> None:
        """A directory where the file should be is refused and left as it is."""
        (home / "secret").mkdir()
        with pytest.raises(UnsafePathError, match="not a regular file"):
            write(home / "secret", CANARY, home)
        assert (home / "secret").is_dir()
        assert leftovers(home) == []

    def test_fifo_at_target_is_refused_without_blocking(self, home: Path) -> None:
        """A FIFO where the file should be is refused (and never opened)."""
        os.mkfifo(home / "secret")
        with pytest.raises(UnsafePathError, match="not a regular file"):
            write(home / "secret", CANARY, home)
        assert stat.S_ISFIFO((home / "secret").lstat().st_mode)
        assert leftovers(home) == []

    def test_file_where_a_directory_is_needed_fails(self, home: Path) -> None:
        """A regular file in place of a parent directory is an ApplyError (ENOTDIR)."""
        (home / "a").write_bytes(OTHER)
        with pytest.raises(ApplyError) as info:
            write(home / "a" / "secret", CANARY, home)
        assert info.value.errno == errno.ENOTDIR
        assert (home / "a").read_bytes() == OTHER

    def test_failed_write_leaves_no_temp_and_keeps_old_bytes(self, home: Path) -> None:
        """When writing the temp file fails (EFBIG under RLIMIT_FSIZE, which binds root
        too) the target keeps its old bytes and no temp file is left."""
        target = home / "secret"
        target.write_bytes(OTHER)
        big = CANARY * (64 * 1024 // len(CANARY) + 1)
        old_limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, old_limits[1]))
        try:
            with pytest.raises(ApplyError) as info:
                write(target, big, home)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old_limits)
            signal.signal(signal.SIGXFSZ, old_handler)
        assert info.value.errno == errno.EFBIG
        assert target.read_bytes() == OTHER
        assert leftovers(home) == []

    @pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
    def test_read_only_directory_fails_cleanly(self, home: Path) -> None:
        """A directory we may not write is an ApplyError (EACCES), with nothing left."""
        (home / "ro").mkdir()
        (home / "ro").chmod(0o500)
        try:
            with pytest.raises(ApplyError) as info:
                write(home / "ro" / "secret", CANARY, home)
        finally:
            (home / "ro").chmod(0o700)
        assert info.value.errno == errno.EACCES
        assert leftovers(home / "ro") == []


def test_readers_never_see_a_torn_file(home: Path) -> None:
    """While one thread rewrites a file 200 times, every read by another thread returns
    one of the two contents exactly."""
    target = home / "secret"
    first, second = b"A" * 300_000, b"B" * 200_000 + b"end"
    write(target, first, home)
    done = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not done.is_set():
            data = target.read_bytes()
            if data not in (first, second):
                seen.append(data[:20] + b"..." + str(len(data)).encode())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            write(target, second if i % 2 == 0 else first, home)
    finally:
        done.set()
        thread.join(timeout=10)
    assert seen == []
    assert leftovers(home) == []


class TestObserve:
    def test_missing_file_and_missing_directory(self, home: Path) -> None:
        """A missing file, or a missing directory on the way, is exists=False; nothing is
        created."""
        assert not observe(str(home / "nope"), roots=[str(home)]).exists
        assert not observe(str(home / "no" / "dir" / "f"), roots=[str(home)]).exists
        assert not (home / "no").exists()

    def test_regular_file(self, home: Path) -> None:
        """A regular file reports its sha256, mode bits and is_file."""
        target = home / "secret"
        target.write_bytes(CANARY)
        target.chmod(0o640)
        seen = observe(str(target), roots=[str(home)])
        assert (seen.exists, seen.is_file, seen.is_symlink) == (True, True, False)
        assert seen.sha == sha256_hex(CANARY)
        assert seen.mode == 0o640

    def test_symlink(self, home: Path) -> None:
        """A symlink at the target is reported as such, with no sha."""
        (home / "real").write_bytes(CANARY)
        (home / "secret").symlink_to(home / "real")
        seen = observe(str(home / "secret"), roots=[str(home)])
        assert (seen.exists, seen.is_symlink, seen.is_file, seen.sha) == (True, True, False, "")

    def test_directory(self, home: Path) -> None:
        """A directory at the target exists but is not a file."""
        (home / "secret").mkdir()
        seen = observe(str(home / "secret"), roots=[str(home)])
        assert (seen.exists, seen.is_file, seen.sha) == (True, False, "")

    def test_oversized_file_has_no_sha(self, home: Path) -> None:
        """A file over MAX_HASH_BYTES cannot be ours: its sha is empty."""
        target = home / "big"
        with target.open("wb") as f:
            f.truncate(MAX_HASH_BYTES + 1)
        seen = observe(str(target), roots=[str(home)])
        assert seen.is_file
        assert seen.sha == ""

    def test_forbidden_symlinked_parent_is_refused(self, home: Path) -> None:
        """observe refuses to look through a symlinked directory leading outside."""
        (home / "link").symlink_to(home.parent / "outside")
        with pytest.raises(UnsafePathError) as info:
            observe(str(home / "link" / "f"), roots=[str(home)])
        assert info.value.symlink is True


class TestRemoveIfUnchanged:
    def test_removes_unchanged_file(self, home: Path) -> None:
        """A file still holding what we wrote is removed."""
        target = home / "secret"
        sha = write(target, CANARY, home).sha
        assert remove_if_unchanged(str(target), sha, roots=[str(home)]) is FileState.REMOVED
        assert not target.exists()

    def test_keeps_edited_file(self, home: Path) -> None:
        """A file someone changed is kept and reported FOREIGN."""
        target = home / "secret"
        sha = write(target, CANARY, home).sha
        target.write_bytes(OTHER)
        assert remove_if_unchanged(str(target), sha, roots=[str(home)]) is FileState.FOREIGN
        assert target.read_bytes() == OTHER

    def test_keeps_symlink(self, home: Path) -> None:
        """A symlink at the target is kept even if what it points to has our bytes."""
        (home / "real").write_bytes(CANARY)
        (home / "secret").symlink_to(home / "real")
        state = remove_if_unchanged(str(home / "secret"), sha256_hex(CANARY), roots=[str(home)])
        assert state is FileState.FOREIGN
        assert (home / "secret").is_symlink()
        assert (home / "real").read_bytes() == CANARY

    def test_keeps_directory(self, home: Path) -> None:
        """A directory at the target is never removed."""
        (home / "secret").mkdir()
        state = remove_if_unchanged(str(home / "secret"), sha256_hex(b""), roots=[str(home)])
        assert state is FileState.FOREIGN
        assert (home / "secret").is_dir()

    def test_missing_file_counts_as_removed(self, home: Path) -> None:
        """Nothing left to remove is success, also when its directory is gone."""
        sha = sha256_hex(CANARY)
        assert remove_if_unchanged(str(home / "gone"), sha, roots=[str(home)]) is FileState.REMOVED
        assert remove_if_unchanged(str(home / "x" / "y"), sha, roots=[str(home)]) is (
            FileState.REMOVED
        )


class TestReadPrivate:
    def test_reads_a_regular_file(self, tmp_path: Path) -> None:
        """A regular file's bytes come back exactly."""
        (tmp_path / "ledger.json").write_bytes(CANARY)
        assert read_private(str(tmp_path / "ledger.json")) == CANARY

    def test_missing_file_or_directory_is_file_not_found(self, tmp_path: Path) -> None:
        """A missing file or directory raises FileNotFoundError, for the caller to decide."""
        with pytest.raises(FileNotFoundError):
            read_private(str(tmp_path / "nope"))
        with pytest.raises(FileNotFoundError):
            read_private(str(tmp_path / "no" / "ledger.json"))

    def test_symlink_is_not_read(self, tmp_path: Path) -> None:
        """A symlink at the path is an OSError (ELOOP), never followed."""
        (tmp_path / "real").write_bytes(CANARY)
        (tmp_path / "ledger.json").symlink_to(tmp_path / "real")
        with pytest.raises(OSError, match="symlink") as info:
            read_private(str(tmp_path / "ledger.json"))
        assert info.value.errno == errno.ELOOP

    def test_oversized_file_is_refused(self, tmp_path: Path) -> None:
        """More than max_bytes is an OSError (EFBIG) rather than an unbounded read."""
        (tmp_path / "big").write_bytes(b"x" * 101)
        assert read_private(str(tmp_path / "big"), max_bytes=101) == b"x" * 101
        with pytest.raises(OSError, match="larger than 100 bytes") as info:
            read_private(str(tmp_path / "big"), max_bytes=100)
        assert info.value.errno == errno.EFBIG


class TestLockExclusive:
    def test_creates_private_state_dir_and_lock(self, tmp_path: Path) -> None:
        """The state dir is created 0700 and the lock file 0600."""
        state = tmp_path / "state" / "secret-agent"
        old = os.umask(0o022)
        try:
            with lock_exclusive(str(state)):
                assert mode_of(state) == 0o700
                assert mode_of(state / "lock") == 0o600
        finally:
            os.umask(old)

    def test_second_holder_is_blocked_until_release(self, tmp_path: Path) -> None:
        """While held, another open of the lock cannot flock it; after release it can,
        and a waiting thread gets the lock only after the first holder let go."""
        state = str(tmp_path / "state")
        events: list[str] = []
        acquired = threading.Event()

        def second() -> None:
            with lock_exclusive(state):
                events.append("second acquired")
                acquired.set()

        with lock_exclusive(state):
            with (
                (tmp_path / "state" / "lock").open("rb") as probe,
                pytest.raises(BlockingIOError),
            ):
                fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            thread = threading.Thread(target=second)
            thread.start()
            events.append("first released")
        assert acquired.wait(timeout=10)
        thread.join(timeout=10)
        assert events == ["first released", "second acquired"]
        with (tmp_path / "state" / "lock").open("rb") as probe:
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def test_errors_in_the_block_are_not_translated(self, tmp_path: Path) -> None:
        """An OSError raised by the caller's block reaches the caller unchanged."""
        with pytest.raises(FileNotFoundError), lock_exclusive(str(tmp_path / "s")):
            raise FileNotFoundError(errno.ENOENT, "caller's own")

    def test_relative_state_dir_is_refused(self) -> None:
        """A relative state_dir is refused rather than resolved against the cwd."""
        with pytest.raises(UnsafePathError), lock_exclusive("relative/state"):
            pass


class TestStateDirIsOursAlone:
    """lock_exclusive (every pass) and check_state_dir (lock-free readers) refuse a
    state_dir that others could read or change, root included, naming the fix."""

    @pytest.fixture(params=["lock", "check"])
    def enter(self, request: pytest.FixtureRequest) -> Callable[[Path], None]:
        """Take the lock, or only check, as a pass or a lock-free reader would."""

        def run(state: Path) -> None:
            if request.param == "lock":
                with lock_exclusive(str(state)):
                    pass
            else:
                check_state_dir(str(state))

        return run

    @pytest.mark.parametrize("loose", [0o777, 0o755, 0o750, 0o711, 0o701, 0o720])
    def test_loose_state_dir_is_refused_with_the_chmod(
        self, tmp_path: Path, enter: Callable[[Path], None], loose: int
    ) -> None:
        """Any group or other bit is refused; the message names the mode and `chmod 700`."""
        state = tmp_path / "state"
        state.mkdir()
        state.chmod(loose)
        with pytest.raises(UnsafePathError) as info:
            enter(state)
        assert f"(mode {loose:04o})" in str(info.value)
        assert f"run `chmod 700 {state}`" in str(info.value)
        assert info.value.path == str(state)
        assert mode_of(state) == loose
        assert not (state / "lock").exists()

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
    def test_state_dir_of_another_user_is_refused(
        self, tmp_path: Path, enter: Callable[[Path], None]
    ) -> None:
        """A 0700 state_dir owned by another uid is refused, naming the chown."""
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        os.chown(state, 65534, 65534)
        with pytest.raises(UnsafePathError, match=f"owned by uid 65534.*chown 0 {state}"):
            enter(state)
        assert not (state / "lock").exists()

    @pytest.mark.parametrize("name", ["ledger.json", "status.json", "lock", "values.json"])
    def test_planted_symlink_is_refused_by_name_and_not_followed(
        self, tmp_path: Path, enter: Callable[[Path], None], name: str
    ) -> None:
        """A symlink in the state dir is refused naming it; what it points to is untouched."""
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        victim = tmp_path / "victim"
        victim.write_bytes(OTHER)
        victim.chmod(0o644)
        (state / name).symlink_to(victim)
        with pytest.raises(UnsafePathError, match="symlink") as info:
            enter(state)
        assert info.value.path == str(state / name)
        assert info.value.symlink is True
        assert victim.read_bytes() == OTHER
        assert mode_of(victim) == 0o644
        assert (state / name).is_symlink()

    def test_private_state_dir_passes_and_a_missing_one_is_made_private(
        self, tmp_path: Path
    ) -> None:
        """A missing state_dir passes the check (nothing is made) and the lock makes it 0700."""
        state = tmp_path / "state"
        check_state_dir(str(state))
        assert not state.exists()
        old = os.umask(0o000)
        try:
            with lock_exclusive(str(state)):
                pass
        finally:
            os.umask(old)
        assert mode_of(state) == 0o700
        check_state_dir(str(state))
