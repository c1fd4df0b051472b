"""`secret-agent run --once` as a real subprocess against the real dev server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import dotenv
import pytest

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak

HOSTILE = {
    "single_quote": "it's a 'quoted' value",
    "double_quote": 'say "hello" now',
    "both_quotes": "mix ' and \" and $HOME",
    "dollar": "cost $5 and ${HOME} and $(id)",
    "backticks": "`id` and `whoami`",
    "backslashes": "C:\\path\\to\\dir\\",
    "newlines": "line one\nline two\n\nline four",
    "injection": "x\nEVIL=1",
    "equals_hash": "a=b#c # not a comment",
    "unicode": "pässwörd ✓ 密码",
    "spaces": "  leading and trailing  ",
}
CANARY = "canary-7f3c1e9a"


def client_for(server: DevServer) -> CoderClient:
    return CoderClient(url=server.url, token=Secret(server.token))


def create(
    server: DevServer, name: str, value: str, *, env_name: str = "", file_path: str = ""
) -> None:
    with client_for(server) as client:
        client.create_secret(name=name, value=Secret(value), env_name=env_name, file_path=file_path)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def all_output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def test_files_have_exact_content_and_tight_modes_under_umask_000(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Each file holds exactly its value, 0600, in new 0700 directories, whatever the umask."""
    create(dev_server, "gh", f"{CANARY}-gh", file_path="~/.config/gh/token")
    create(dev_server, "deep", f"{CANARY}-deep\n", file_path="~/a/b/c/secret.pem")
    result = workspace.run("run", "--once", umask=0o000)
    assert result.returncode == 0, result.stderr
    gh = workspace.home / ".config/gh/token"
    deep = workspace.home / "a/b/c/secret.pem"
    assert gh.read_bytes() == f"{CANARY}-gh".encode()
    assert deep.read_bytes() == f"{CANARY}-deep\n".encode()
    assert mode(gh) == 0o600
    assert mode(deep) == 0o600
    for d in ("a", "a/b", "a/b/c", ".config/gh"):
        assert mode(workspace.home / d) == 0o700, d
    assert mode(workspace.env_file) == 0o600
    assert_no_leak([f"{CANARY}-gh", f"{CANARY}-deep"], all_output(result))


def test_existing_loose_file_is_tightened_to_0600(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """A pre-existing 0644 file at the target ends up 0600 with the secret's bytes."""
    target = workspace.home / "token"
    target.write_text("old")
    target.chmod(0o644)
    create(dev_server, "tok", CANARY, file_path="~/token")
    result = workspace.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert target.read_text() == CANARY
    assert mode(target) == 0o600


def _bash_values(env_file: Path, names: list[str]) -> dict[str, str]:
    script = 'set -a; . "$1"; shift; for n in "$@"; do printf "%s\\0" "${!n-__UNSET__}"; done'
    out = subprocess.run(
        ["/usr/bin/env", "-i", "bash", "-c", script, "bash", str(env_file), *names, "EVIL"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    values = out.split("\0")[:-1]
    return dict(zip([*names, "EVIL"], values, strict=True))


def test_posix_env_file_sourced_by_bash_gives_back_hostile_values(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """`set -a; . secrets.env` in bash yields exactly every value, and never EVIL."""
    names = []
    for i, value in enumerate(HOSTILE.values()):
        names.append(f"HOSTILE_{i}")
        create(dev_server, f"hostile-{i}", value, env_name=f"HOSTILE_{i}")
    result = workspace.run("run", "--once")
    assert result.returncode == 0, result.stderr
    got = _bash_values(workspace.env_file, names)
    assert got.pop("EVIL") == "__UNSET__"
    assert got == {f"HOSTILE_{i}": v for i, v in enumerate(HOSTILE.values())}
    assert_no_leak([v for v in HOSTILE.values() if len(v) > 8], all_output(result))


def test_dotenv_env_file_read_by_python_dotenv_is_exact_or_refused_by_name(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """python-dotenv reads back exactly every accepted value; the rest are refused by name."""
    for i, value in enumerate(HOSTILE.values()):
        create(dev_server, f"hostile-{i}", value, env_name=f"HOSTILE_{i}")
    result = workspace.run("run", "--once", "--env-format", "dotenv")
    read = dotenv.dotenv_values(workspace.env_file)
    assert "EVIL" not in read
    refused = {f"HOSTILE_{i}" for i in range(len(HOSTILE))} - set(read)
    for i, value in enumerate(HOSTILE.values()):
        name = f"HOSTILE_{i}"
        if name in read:
            assert read[name] == value, name
        else:
            assert f"hostile-{i}" in result.stderr  # the refusal names the secret
    assert result.returncode == (1 if refused else 0)
    # A format that refuses everything interesting would be useless: most must pass.
    assert len(refused) <= 4, refused


def _stat_sig(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def test_second_run_makes_one_request_and_writes_nothing(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Steady state: one list request, no file rewritten (inode and mtime unchanged)."""
    create(dev_server, "a", f"{CANARY}-a", file_path="~/a.txt", env_name="A_TOKEN")
    create(dev_server, "b", f"{CANARY}-b", file_path="~/b.txt")
    assert workspace.run("run", "--once").returncode == 0
    watched = [
        workspace.home / "a.txt",
        workspace.home / "b.txt",
        workspace.env_file,
        workspace.state_dir / "ledger.json",
    ]
    before = [_stat_sig(p) for p in watched]
    dev_server.request_log.clear()
    result = workspace.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert dev_server.request_log == [("GET", "/api/v2/users/me/secrets")]
    assert [_stat_sig(p) for p in watched] == before


def test_rotation_rewrites_and_fetches_only_that_secret(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Rotating one secret gets only it, rewrites only its file, and updates the env file."""
    create(dev_server, "a", f"{CANARY}-a1", file_path="~/a.txt", env_name="A_TOKEN")
    create(dev_server, "b", f"{CANARY}-b", file_path="~/b.txt", env_name="B_TOKEN")
    assert workspace.run("run", "--once").returncode == 0
    b_before = _stat_sig(workspace.home / "b.txt")
    with client_for(dev_server) as client:
        client.update_secret("a", value=Secret(f"{CANARY}-a2"))
    dev_server.request_log.clear()
    result = workspace.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert dev_server.request_log == [
        ("GET", "/api/v2/users/me/secrets"),
        ("GET", "/api/v2/users/me/secrets/a"),
    ]
    assert (workspace.home / "a.txt").read_text() == f"{CANARY}-a2"
    assert _stat_sig(workspace.home / "b.txt") == b_before
    env = _bash_values(workspace.env_file, ["A_TOKEN", "B_TOKEN"])
    assert env["A_TOKEN"] == f"{CANARY}-a2"
    assert env["B_TOKEN"] == f"{CANARY}-b"


def test_deletion_removes_file_and_variable_but_keeps_a_user_edited_file(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Deleted secrets lose their file and variable; a file someone edited is kept and reported."""
    create(dev_server, "gone", f"{CANARY}-gone", file_path="~/gone.txt", env_name="GONE")
    create(dev_server, "edited", f"{CANARY}-edited", file_path="~/edited.txt")
    create(dev_server, "stays", f"{CANARY}-stays", env_name="STAYS")
    assert workspace.run("run", "--once").returncode == 0
    (workspace.home / "edited.txt").write_text("my own notes")
    with client_for(dev_server) as client:
        client.delete_secret("gone")
        client.delete_secret("edited")
    result = workspace.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert not (workspace.home / "gone.txt").exists()
    assert (workspace.home / "edited.txt").read_text() == "my own notes"
    assert "file_kept_changed_by_someone_else" in result.stderr
    assert str(workspace.home / "edited.txt") in result.stderr
    env = _bash_values(workspace.env_file, ["GONE", "STAYS"])
    assert env == {"GONE": "__UNSET__", "STAYS": f"{CANARY}-stays", "EVIL": "__UNSET__"}


@pytest.mark.parametrize(
    ("case", "file_path"),
    [
        ("dotdot-escape", "~/../outside/escape.txt"),
        ("absolute-outside-roots", "{outside}/abs.txt"),
        ("symlink-at-target", "~/planted"),
        ("symlinked-parent-outside", "~/linkdir/x.txt"),
    ],
)
def test_hostile_paths_are_refused_and_the_rest_applies(
    dev_server: DevServer, workspace: Workspace, tmp_path: Path, case: str, file_path: str
) -> None:
    """A path escaping the roots is refused by name, nothing lands outside, others apply."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("untouched")
    (workspace.home / "planted").symlink_to(victim)
    (workspace.home / "linkdir").symlink_to(outside)
    create(dev_server, "bad-one", f"{CANARY}-bad", file_path=file_path.format(outside=outside))
    create(dev_server, "good-one", f"{CANARY}-good", file_path="~/good.txt")
    result = workspace.run("run", "--once")
    assert result.returncode == 1, case
    assert "bad-one" in result.stderr
    assert (workspace.home / "good.txt").read_text() == f"{CANARY}-good"
    assert victim.read_text() == "untouched"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert_no_leak([f"{CANARY}-bad", f"{CANARY}-good"], all_output(result))


def test_symlinked_parent_inside_roots_works(dev_server: DevServer, workspace: Workspace) -> None:
    """A dotfiles-style symlinked ~/.config that stays inside the home is followed."""
    real = workspace.home / "dotfiles/config"
    real.mkdir(parents=True)
    cfg = workspace.config_path.read_text()
    (workspace.home / ".config").rename(workspace.home / "dotfiles/config-old")
    (workspace.home / ".config").symlink_to(real)
    workspace.write_config(cfg)
    create(dev_server, "gh", CANARY, file_path="~/.config/gh/hosts.yml")
    result = workspace.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert (real / "gh/hosts.yml").read_text() == CANARY


def test_no_value_in_output_ledger_or_state_at_debug(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Values appear in their files and the env file only; never in logs or state_dir."""
    values = [f"{CANARY}-{i}-{'x' * i}" for i in range(5)]
    for i, v in enumerate(values):
        create(dev_server, f"s{i}", v, file_path=f"~/s{i}", env_name=f"S_{i}")
    first = workspace.run("run", "--once", "--log-level", "debug")
    second = workspace.run("check")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    ledger = (workspace.state_dir / "ledger.json").read_text()
    assert json.loads(ledger)["entries"]
    state = [p.read_bytes().decode("utf-8", "replace") for p in workspace.state_dir.iterdir()]
    assert_no_leak(values, all_output(first), all_output(second), ledger, *state)
    assert sorted(p.name for p in workspace.state_dir.iterdir()) == ["ledger.json", "lock"]
    assert mode(workspace.state_dir) == 0o700


def test_an_uninspectable_target_fails_alone_and_the_rest_rotates(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """A target whose parent is a regular file fails that secret only; others still apply."""
    (workspace.home / "afile").write_text("not a directory")
    create(dev_server, "broken", f"{CANARY}-broken", file_path="~/afile/x")
    create(dev_server, "fine", f"{CANARY}-fine-1", file_path="~/fine.txt")
    result = workspace.run("run", "--once")
    assert result.returncode == 1
    assert "broken" in result.stderr
    assert (workspace.home / "fine.txt").read_text() == f"{CANARY}-fine-1"
    with client_for(dev_server) as client:
        client.update_secret("fine", value=Secret(f"{CANARY}-fine-2"))
    again = workspace.run("run", "--once")
    assert again.returncode == 1
    assert (workspace.home / "fine.txt").read_text() == f"{CANARY}-fine-2"
    assert (workspace.home / "afile").read_text() == "not a directory"
