"""`originals`: keeping the file that was there before, and putting it back, on real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from secret_agent import originals
from secret_agent.errors import UnsafePathError


def test_keep_links_the_original_and_survives_a_retry(tmp_path: Path) -> None:
    """A second keep after a failed write finds the same file under the backup name: fine."""
    target = tmp_path / "credentials"
    target.write_text("mine")
    target.chmod(0o644)
    backup = f"{target}.secret-agent-orig"
    assert originals.keep(str(target), backup, roots=[str(tmp_path)]) is True
    assert originals.keep(str(target), backup, roots=[str(tmp_path)]) is True
    assert os.stat(backup).st_ino == os.stat(target).st_ino
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert Path(backup).read_text() == "mine"


def test_keep_never_replaces_another_backup(tmp_path: Path) -> None:
    target = tmp_path / "credentials"
    target.write_text("mine")
    backup = tmp_path / "credentials.secret-agent-orig"
    backup.write_text("older")
    with pytest.raises(UnsafePathError, match="second backup"):
        originals.keep(str(target), str(backup), roots=[str(tmp_path)])
    assert backup.read_text() == "older" and target.read_text() == "mine"


def test_keep_refuses_a_symlink_and_never_follows_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("not yours")
    (tmp_path / "home").mkdir()
    link = tmp_path / "home/credentials"
    link.symlink_to(outside)
    with pytest.raises(UnsafePathError):
        originals.keep(str(link), f"{link}.secret-agent-orig", roots=[str(tmp_path / "home")])
    assert not Path(f"{link}.secret-agent-orig").exists()


def test_put_back_waits_for_a_free_name(tmp_path: Path) -> None:
    """Something at the target now: the backup stays; once it is gone, the original returns."""
    target = tmp_path / "credentials"
    backup = tmp_path / "credentials.secret-agent-orig"
    backup.write_text("mine")
    target.write_text("someone else's")
    assert originals.put_back(str(target), str(backup), roots=None) is False
    assert backup.read_text() == "mine" and target.read_text() == "someone else's"
    target.unlink()
    assert originals.put_back(str(target), str(backup), roots=None) is True
    assert target.read_text() == "mine" and not backup.exists()
    assert originals.put_back(str(target), str(backup), roots=None) is False  # nothing left


def test_a_backup_elsewhere_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "credentials"
    target.write_text("mine")
    with pytest.raises(UnsafePathError, match="not beside"):
        originals.keep(str(target), str(tmp_path / "sub/credentials.bak"), roots=None)
