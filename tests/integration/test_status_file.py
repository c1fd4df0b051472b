"""state: the status file on a real filesystem (modes, atomic replace) and pid liveness."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from secret_agent.errors import UnsafePathError
from secret_agent.status_file import (
    FORMAT_VERSION,
    STATUS_NAME,
    SecretStatus,
    Status,
    pid_alive,
    read_status,
    status_path,
    write_status,
)

STATUS = Status(
    pid=4242,
    phase="retrying",
    version="0.1.0",
    started_at="2024-05-01T10:00:00.000Z",
    last_attempt="2024-05-01T10:05:00.000Z",
    last_good_sync="2024-05-01T10:00:01.250Z",
    last_error="server answered 503 \u2013 caf\u00e9 \u2713",
    last_error_kind="ServerError",
    consecutive_failures=3,
    next_attempt="2024-05-01T10:05:04.000Z",
    requests_last_pass=2,
    env_file="/home/u/.config/secret-agent/secrets.env",
    secrets=(
        SecretStatus(
            name="gh", path="/home/u/.config/gh/hosts.yml", state="written", short_sha="1a2b3c4d"
        ),
        SecretStatus(name="npm", env_name="NPM_TOKEN", state="unchanged", short_sha="9f8e7d6c"),
        SecretStatus(name="bad", error="path outside allowed roots"),
    ),
)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


def test_round_trip(state_dir: Path) -> None:
    """read_status gives back every field write_status wrote, non-ASCII text included."""
    write_status(str(state_dir), STATUS)
    assert read_status(str(state_dir)) == STATUS


def test_status_file_is_0600_whatever_the_umask(state_dir: Path) -> None:
    """status.json is created with mode 0600 even under umask 000."""
    old = os.umask(0)
    try:
        write_status(str(state_dir), STATUS)
    finally:
        os.umask(old)
    st = os.lstat(state_dir / STATUS_NAME)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_write_creates_a_missing_state_dir_privately(tmp_path: Path) -> None:
    """A missing state directory is created with mode 0700 and holds the status file."""
    state = tmp_path / "new/state"
    write_status(str(state), STATUS)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert read_status(str(state)) == STATUS


def test_rewrite_replaces_atomically_and_leaves_no_temp_files(state_dir: Path) -> None:
    """A rewrite renames a new file into place: the old inode keeps the old bytes, no temp remains."""
    write_status(str(state_dir), STATUS)
    old_link = state_dir.parent / "old-status-link"
    os.link(state_dir / STATUS_NAME, old_link)
    old_bytes = old_link.read_bytes()

    synced = Status(pid=4242, phase="synced", last_good_sync="2024-05-01T10:06:00.000Z")
    write_status(str(state_dir), synced)

    assert sorted(os.listdir(state_dir)) == [STATUS_NAME]
    assert old_link.read_bytes() == old_bytes  # never written in place
    assert not os.path.samefile(old_link, state_dir / STATUS_NAME)
    assert read_status(str(state_dir)) == synced
    assert stat.S_IMODE(os.lstat(state_dir / STATUS_NAME).st_mode) == 0o600


def test_status_file_is_json_with_the_format_version(state_dir: Path) -> None:
    """On disk the status is a UTF-8 JSON object carrying `format` and the fields."""
    write_status(str(state_dir), STATUS)
    raw = Path(status_path(str(state_dir))).read_bytes()
    assert raw.endswith(b"\n")
    assert "caf\u00e9".encode() in raw
    doc = json.loads(raw)
    assert doc["format"] == FORMAT_VERSION
    assert doc["pid"] == 4242
    assert doc["phase"] == "retrying"


def test_missing_file_reads_as_none(state_dir: Path) -> None:
    """An empty state directory has no status: read_status returns None."""
    assert read_status(str(state_dir)) is None


def test_missing_state_dir_reads_as_none(tmp_path: Path) -> None:
    """A state directory that does not exist has no status: read_status returns None."""
    assert read_status(str(tmp_path / "never-created")) is None


UNREADABLE = [
    pytest.param(b"", id="empty"),
    pytest.param(b'{"format": 1, "pid": 4', id="truncated"),
    pytest.param(b"not json at all", id="garbage"),
    pytest.param(b'{"format": 1, "phase": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b"\x00" * 64, id="nul-bytes"),
    pytest.param(b'[{"format": 1}]', id="array"),
    pytest.param(b"null", id="null"),
    pytest.param(b"1", id="number"),
    pytest.param(b'"status"', id="string"),
    pytest.param(b'{"pid": 1, "phase": "synced"}', id="no-format"),
    pytest.param(b'{"format": 2, "pid": 1, "phase": "synced"}', id="format-2"),
    pytest.param(b'{"format": 0, "pid": 1, "phase": "synced"}', id="format-0"),
    pytest.param(b'{"format": "1", "pid": 1, "phase": "synced"}', id="format-string"),
    pytest.param(b'{"format": null, "pid": 1, "phase": "synced"}', id="format-null"),
    pytest.param(
        b'{"format": true, "pid": 1, "phase": "synced"}',
        id="format-true",
    ),
    pytest.param(
        b"[" * 100_000,
        id="deeply-nested",
    ),
]


@pytest.mark.parametrize("content", UNREADABLE)
def test_unreadable_file_reads_as_none(state_dir: Path, content: bytes) -> None:
    """A corrupt status file, or one of another format version, reads as None."""
    path = state_dir / STATUS_NAME
    path.write_bytes(content)
    path.chmod(0o600)
    assert read_status(str(state_dir)) is None


def test_a_field_of_the_wrong_type_reads_as_its_default(state_dir: Path) -> None:
    """A damaged status says less, never crashes `status` or `exec`: each field of the
    wrong type is its default, the others are read."""
    doc = {
        "format": FORMAT_VERSION,
        "pid": "4242",
        "phase": "synced",
        "consecutive_failures": True,
        "last_error": ["not", "text"],
        "last_good_sync": "2024-05-01T10:00:01.250Z",
        "secrets": [{"name": "gh", "path": 7, "state": "written"}, "junk", {"name": 3}],
    }
    (state_dir / STATUS_NAME).write_text(json.dumps(doc))
    assert read_status(str(state_dir)) == Status(
        pid=0,
        phase="synced",
        last_good_sync="2024-05-01T10:00:01.250Z",
        secrets=(SecretStatus(name="gh", state="written"), SecretStatus(name="")),
    )


def test_oversized_file_reads_as_none(state_dir: Path) -> None:
    """A status file over the 4 MiB read cap reads as None instead of being loaded."""
    doc = json.dumps({"format": FORMAT_VERSION, "pid": 1, "pad": "x" * (4 << 20)})
    (state_dir / STATUS_NAME).write_text(doc)
    assert read_status(str(state_dir)) is None


def test_directory_in_place_of_the_file_reads_as_none(state_dir: Path) -> None:
    """A directory named status.json is not a status: read_status returns None."""
    (state_dir / STATUS_NAME).mkdir()
    assert read_status(str(state_dir)) is None


def test_symlinked_status_file_is_not_followed(state_dir: Path, tmp_path: Path) -> None:
    """A symlink at status.json is refused, naming it, even when it points at a valid status."""
    elsewhere = tmp_path / "elsewhere"
    write_status(str(elsewhere), STATUS)
    assert read_status(str(elsewhere)) is not None
    (state_dir / STATUS_NAME).symlink_to(elsewhere / STATUS_NAME)
    with pytest.raises(UnsafePathError) as caught:
        read_status(str(state_dir))
    assert caught.value.path == str(state_dir / STATUS_NAME)


# -- pid_alive ---------------------------------------------------------------


def test_own_pid_is_alive() -> None:
    """The test process itself is alive."""
    assert pid_alive(os.getpid()) is True


def test_exited_process_is_not_alive() -> None:
    """The pid of a child that has exited and been reaped is not alive."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert child.wait(timeout=10) == 0
    assert pid_alive(child.pid) is False


def test_running_child_is_alive() -> None:
    """A child that is still running is alive, and stops being so once it is reaped."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert pid_alive(child.pid) is True
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    assert pid_alive(child.pid) is False


NOT_PIDS = [
    pytest.param(0, id="zero"),
    pytest.param(-1, id="minus-one"),
    pytest.param(-os.getpid(), id="negative-own-pid"),
    pytest.param(None, id="none"),
    pytest.param(str(os.getpid()), id="own-pid-as-string"),
    pytest.param(float(os.getpid()), id="own-pid-as-float"),
    pytest.param([os.getpid()], id="list"),
    pytest.param(2**31 - 1, id="max-pid-t-unused"),
    pytest.param(
        True,
        id="bool-true",
    ),
    pytest.param(
        2**40,
        id="beyond-pid-t",
    ),
]


@pytest.mark.parametrize("pid", NOT_PIDS)
def test_not_a_live_pid(pid: object) -> None:
    """Zero, negatives, non-ints and pids no process can have are never alive."""
    assert pid_alive(pid) is False
