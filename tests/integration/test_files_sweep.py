"""files: temp files a killed writer left are swept, and nothing else ever is."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from secret_agent import files
from secret_agent.errors import UnsafePathError
from secret_agent.files import remove_if_unchanged, sha256_hex, sweep_temps, write_atomic
from secret_agent.model import FileState

VALUE = b"canary-sweep-5d1e8b\n" * 1000
OLD = b"what the target held before"
DEAD = ".secret.secret-agent.0123456789ab.tmp"  # a name _create_temp could have made


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    return root


def plant_dead_temp(directory: Path, name: str = DEAD, content: bytes = VALUE) -> Path:
    """A temp file as a SIGKILLed writer leaves it: ours, 0600, full of a value, unlocked."""
    path = directory / name
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def live_writer(home: Path) -> Iterator[Path]:
    """A temp file whose writer is alive: it holds flock(LOCK_EX) on it, as write_atomic does."""
    path = plant_dead_temp(home, ".other.secret-agent.fedcba987654.tmp")
    fd = os.open(path, os.O_WRONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        os.close(fd)


class TestDeadTempsAreSwept:
    def test_write_removes_a_dead_writers_temp_and_writes_whole(self, home: Path) -> None:
        """Writing a target removes the temp file a killed writer left beside it."""
        dead = plant_dead_temp(home)
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        assert not dead.exists()
        assert names(home) == ["secret"]
        assert (home / "secret").read_bytes() == VALUE

    def test_unchanged_write_still_sweeps(self, home: Path) -> None:
        """A write that changes nothing (same bytes) still sweeps the directory."""
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        dead = plant_dead_temp(home)
        assert not write_atomic(str(home / "secret"), VALUE, roots=[str(home)]).written
        assert not dead.exists()

    def test_temps_of_other_targets_in_the_directory_are_swept(self, home: Path) -> None:
        """Any dead temp in the directory goes, whichever target it was for, long names too."""
        plant_dead_temp(home, ".aws-credentials.secret-agent.aaaaaaaaaaaa.tmp")
        plant_dead_temp(home, "." + "n" * 200 + ".secret-agent.bbbbbbbbbbbb.tmp")
        plant_dead_temp(home, ".with.dots.secret-agent.cccccccccccc.tmp")
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        assert names(home) == ["secret"]

    def test_state_file_write_sweeps_the_state_dir(self, tmp_path: Path) -> None:
        """A ledger or status write (roots=None) sweeps its directory too."""
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        plant_dead_temp(state, ".values.json.secret-agent.0a1b2c3d4e5f.tmp")
        write_atomic(str(state / "ledger.json"), b"{}", roots=None)
        assert names(state) == ["ledger.json"]

    def test_removal_sweeps(self, home: Path) -> None:
        """remove_if_unchanged sweeps the directory it opened."""
        sha = write_atomic(str(home / "secret"), VALUE, roots=[str(home)]).sha
        dead = plant_dead_temp(home)
        assert remove_if_unchanged(str(home / "secret"), sha, roots=[str(home)]) is (
            FileState.REMOVED
        )
        assert names(home) == []
        assert not dead.exists()

    def test_removal_of_a_file_already_gone_still_sweeps(self, home: Path) -> None:
        """A target already gone is REMOVED, and its directory is still swept."""
        dead = plant_dead_temp(home)
        state = remove_if_unchanged(str(home / "secret"), sha256_hex(VALUE), roots=[str(home)])
        assert state is FileState.REMOVED
        assert not dead.exists()

    def test_sweep_temps_sweeps_the_directory_of_a_path(self, home: Path) -> None:
        """sweep_temps removes dead temps beside `path` and returns their paths."""
        (home / "d").mkdir()
        dead = plant_dead_temp(home / "d")
        (home / "d" / "keep").write_bytes(OLD)
        assert sweep_temps(str(home / "d" / "secret"), roots=[str(home)]) == (str(dead),)
        assert names(home / "d") == ["keep"]

    def test_sweep_temps_of_a_missing_directory_creates_nothing(self, home: Path) -> None:
        """Nothing to sweep where the directory does not exist; nothing is created."""
        assert sweep_temps(str(home / "no" / "such" / "f"), roots=[str(home)]) == ()
        assert not (home / "no").exists()

    def test_old_empty_temp_is_swept(self, home: Path) -> None:
        """An empty temp left long ago (killed before writing) is swept."""
        dead = plant_dead_temp(home, content=b"")
        past = time.time() - 3600
        os.utime(dead, (past, past))
        assert sweep_temps(str(home / "secret"), roots=[str(home)]) == (str(dead),)


class TestOnlyOursAreSwept:
    def test_live_writers_temp_is_kept(self, home: Path, live_writer: Path) -> None:
        """A temp file whose writer holds its flock (another secret-agent) is never
        touched, while a dead writer's beside it is swept."""
        dead = plant_dead_temp(home)
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        assert not dead.exists()
        assert sweep_temps(str(home / "secret"), roots=[str(home)]) == ()
        assert live_writer.read_bytes() == VALUE

    def test_the_writer_holds_its_temp_while_writing(
        self, home: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A sweep of the directory while a write is under way keeps that write's temp
        file, and the write then completes."""
        seen: list[tuple[list[str], tuple[str, ...]]] = []
        real_write_all = files._write_all

        def write_all_with_a_sweep_meanwhile(fd: int, content: bytes) -> None:
            real_write_all(fd, content)  # the temp file now holds the value
            temps = [n for n in names(home) if n.endswith(".tmp")]
            seen.append((temps, sweep_temps(str(home / "other"), roots=[str(home)])))

        monkeypatch.setattr(files, "_write_all", write_all_with_a_sweep_meanwhile)
        assert write_atomic(str(home / "secret"), VALUE, roots=[str(home)]).written
        assert len(seen) == 1
        temps, swept = seen[0]
        assert len(temps) == 1
        assert swept == ()
        assert (home / "secret").read_bytes() == VALUE
        assert names(home) == ["secret"]

    def test_fresh_empty_temp_is_swept_too(self, home: Path) -> None:
        """An empty temp (a writer killed between open and write) is swept at once:
        sweeps run under the state lock, so it cannot be a live writer's of ours."""
        empty = plant_dead_temp(home, ".empty.secret-agent.0123456789ab.tmp", content=b"")
        dead = plant_dead_temp(home)
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        assert not dead.exists()
        assert not empty.exists()

    @pytest.mark.parametrize(
        "name",
        [
            ".x.secret-agent.tmp",
            ".x.secret-agent.0123456789AB.tmp",
            ".x.secret-agent.0123456789a.tmp",
            ".x.secret-agent.0123456789abc.tmp",
            "x.secret-agent.0123456789ab.tmp",
            ".secret-agent.0123456789ab.tmp",
            ".x.secret-agent.0123456789ab.tmp.bak",
            ".x.secret-agent.0123456789ab.tmp~",
            ".x.secret-agent-orig",
            "x.secret-agent-orig",
            "." + "n" * 201 + ".secret-agent.0123456789ab.tmp",
        ],
        ids=[
            "no-random",
            "upper-hex",
            "short-hex",
            "long-hex",
            "no-leading-dot",
            "no-stem",
            "suffix-after",
            "editor-backup",
            "dot-backup",
            "backup",
            "stem-too-long",
        ],
    )
    def test_lookalike_names_are_kept(self, home: Path, name: str) -> None:
        """A user's file whose name is not exactly our temp pattern is never removed."""
        lookalike = plant_dead_temp(home, name)
        dead = plant_dead_temp(home)
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        assert not dead.exists()
        assert lookalike.read_bytes() == VALUE

    def test_symlink_with_the_pattern_name_is_kept_and_not_followed(self, home: Path) -> None:
        """A symlink named like a temp file stays, and the file it points to is untouched."""
        pointed = home.parent / "outside" / "precious"
        pointed.write_bytes(OLD)
        link = home / ".link.secret-agent.0123456789ab.tmp"
        link.symlink_to(pointed)
        dead = plant_dead_temp(home)
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        assert not dead.exists()
        assert link.is_symlink()
        assert pointed.read_bytes() == OLD

    def test_directory_and_fifo_with_the_pattern_name_are_kept(self, home: Path) -> None:
        """A directory or an old FIFO named like a temp file stays (and the FIFO never blocks)."""
        directory = home / ".dir.secret-agent.0123456789ab.tmp"
        directory.mkdir()
        (directory / "inside").write_bytes(OLD)
        fifo = home / ".fifo.secret-agent.0123456789ab.tmp"
        os.mkfifo(fifo)
        past = time.time() - 3600
        os.utime(fifo, (past, past))  # as old as an abandoned empty temp that is swept
        dead = plant_dead_temp(home)
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        assert not dead.exists()
        assert (directory / "inside").read_bytes() == OLD
        assert fifo.exists()

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another uid")
    def test_another_users_temp_is_kept(self, home: Path) -> None:
        """A temp-named file owned by another uid is left (root too sweeps only its own)."""
        theirs = plant_dead_temp(home, ".theirs.secret-agent.0123456789ab.tmp")
        os.chown(theirs, 65534, 65534)
        dead = plant_dead_temp(home)
        write_atomic(str(home / "secret"), VALUE, roots=[str(home)])
        assert not dead.exists()
        assert theirs.read_bytes() == VALUE

    def test_sweep_outside_the_roots_is_refused(self, home: Path) -> None:
        """sweep_temps walks as observe does: a path outside the roots is refused."""
        dead = plant_dead_temp(home.parent / "outside")
        with pytest.raises(UnsafePathError):
            sweep_temps(str(home.parent / "outside" / "x"), roots=[str(home)])
        assert dead.exists()
