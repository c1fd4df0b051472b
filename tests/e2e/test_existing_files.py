"""A file that was there before is never lost: `sync.existing_files` (issue 8, item 1).

"backup" (default) keeps the original as NAME.secret-agent-orig (0600) and puts it back
when the secret goes away; "refuse" refuses that target; "replace" overwrites it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak

CANARY = "canary-orig-4a0d"
MINE = "[default]\naws_access_key_id = MINE-by-hand\n"


def client(server: DevServer) -> CoderClient:
    return CoderClient(url=server.url, token=Secret(server.token))


def create(server: DevServer, name: str, value: str, **kw: str) -> None:
    with client(server) as c:
        c.create_secret(name=name, value=Secret(value), **kw)


def delete(server: DevServer, name: str) -> None:
    with client(server) as c:
        c.delete_secret(name)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def events(result: subprocess.CompletedProcess[str], name: str) -> list[dict[str, object]]:
    found = []
    for line in result.stderr.splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("event") == name:
                found.append(doc)
    return found


def hand_made(path: Path, text: str = MINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)


def config(workspace: Workspace, extra: str = "") -> None:
    workspace.write_config(f'[log]\nformat = "json"\n{extra}')


def test_backup_keeps_the_original_and_puts_it_back_when_the_secret_goes(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Default: the user's file is kept beside ours, shown by check, and returned."""
    config(workspace)
    creds = workspace.home / ".aws/credentials"
    backup = workspace.home / ".aws/credentials.secret-agent-orig"
    hand_made(creds)
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    check = workspace.run("check")
    assert f"yours kept as {backup}" in check.stdout
    first = workspace.run("run", "--once")
    assert first.returncode == 0, first.stderr
    assert creds.read_text() == f"{CANARY}-aws"
    assert mode(creds) == 0o600
    assert backup.read_text() == MINE
    assert mode(backup) == 0o600
    [kept] = events(first, "original_kept")
    assert kept["path"] == str(creds) and kept["backup"] == str(backup)
    again = workspace.run("run", "--once")
    assert again.returncode == 0 and backup.read_text() == MINE  # no second backup
    delete(dev_server, "aws")
    gone = workspace.run("run", "--once")
    assert gone.returncode == 0, gone.stderr
    assert creds.read_text() == MINE
    assert mode(creds) == 0o644  # its own mode back, not the backup's 0600
    assert not backup.exists()
    assert events(gone, "original_restored")
    assert_no_leak([f"{CANARY}-aws"], first.stderr, gone.stderr, check.stdout)


def test_a_moved_secret_puts_the_original_back_at_the_old_path(
    dev_server: DevServer, workspace: Workspace
) -> None:
    config(workspace)
    creds = workspace.home / ".aws/credentials"
    hand_made(creds)
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    assert workspace.run("run", "--once").returncode == 0
    with client(dev_server) as c:
        c.update_secret("aws", file_path="~/.aws/other")
    assert workspace.run("run", "--once").returncode == 0
    assert creds.read_text() == MINE
    assert (workspace.home / ".aws/other").read_text() == f"{CANARY}-aws"
    assert not (workspace.home / ".aws/credentials.secret-agent-orig").exists()


def test_the_env_file_moved_over_a_users_file_and_off_again_loses_nothing(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """--env-file ~/.env over the user's own ~/.env, then --env-file "": ~/.env is theirs."""
    config(workspace)
    dotenv = workspace.home / ".env"
    hand_made(dotenv, "MY_OWN=1\n")
    create(dev_server, "tok", f"{CANARY}-tok", env_name="TOK")
    assert workspace.run("run", "--once").returncode == 0
    moved = workspace.run("run", "--once", "--env-file", str(dotenv))
    assert moved.returncode == 0, moved.stderr
    assert f"{CANARY}-tok" in dotenv.read_text()
    assert (workspace.home / ".env.secret-agent-orig").read_text() == "MY_OWN=1\n"
    assert not workspace.env_file.exists()  # the old env file was ours: pruned
    off = workspace.run("run", "--once", "--env-file", "")
    assert off.returncode == 0, off.stderr
    assert dotenv.read_text() == "MY_OWN=1\n"
    assert mode(dotenv) == 0o644
    assert not (workspace.home / ".env.secret-agent-orig").exists()


def test_never_a_second_backup_over_the_first(dev_server: DevServer, workspace: Workspace) -> None:
    """A name already taken by another file refuses the target; both files stay as they are."""
    config(workspace)
    creds = workspace.home / ".aws/credentials"
    hand_made(creds)
    taken = workspace.home / ".aws/credentials.secret-agent-orig"
    hand_made(taken, "an older backup\n")
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    create(dev_server, "other", f"{CANARY}-other", file_path="~/other")
    result = workspace.run("run", "--once")
    assert result.returncode == 1
    assert creds.read_text() == MINE and taken.read_text() == "an older backup\n"
    assert (workspace.home / "other").read_text() == f"{CANARY}-other"
    [refusal] = events(result, "secret_refused")
    assert refusal["secret"] == "aws" and "second backup" in str(refusal["error"])


def test_refuse_leaves_the_file_and_refuses_that_target_by_name(
    dev_server: DevServer, workspace: Workspace
) -> None:
    config(workspace, '\n[sync]\nexisting_files = "refuse"\n')
    creds = workspace.home / ".aws/credentials"
    hand_made(creds)
    dotenv = workspace.home / ".env"
    hand_made(dotenv, "MY_OWN=1\n")
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    create(dev_server, "other", f"{CANARY}-other", file_path="~/other", env_name="OTHER")
    result = workspace.run("run", "--once", "--env-file", str(dotenv))
    assert result.returncode == 1
    assert creds.read_text() == MINE and mode(creds) == 0o644
    assert dotenv.read_text() == "MY_OWN=1\n"
    assert (workspace.home / "other").read_text() == f"{CANARY}-other"
    [refusal] = events(result, "secret_refused")
    assert refusal["secret"] == "aws" and '"refuse"' in str(refusal["error"])
    [env_refused] = events(result, "env_file_refused")
    assert "did not write" in str(env_refused["error"])
    check = workspace.run("check", "--env-file", str(dotenv))
    assert check.returncode == 1 and "refused:" in check.stdout


def test_replace_overwrites_as_coders_agent_does(
    dev_server: DevServer, workspace: Workspace
) -> None:
    config(workspace, '\n[sync]\nexisting_files = "replace"\n')
    creds = workspace.home / ".aws/credentials"
    hand_made(creds)
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    assert workspace.run("run", "--once").returncode == 0
    assert creds.read_text() == f"{CANARY}-aws"
    assert not (workspace.home / ".aws/credentials.secret-agent-orig").exists()


@pytest.mark.parametrize("edited", [False, True], ids=["prune-off", "edited-by-hand"])
def test_a_target_that_stays_keeps_the_original_beside_it_and_says_so(
    dev_server: DevServer, workspace: Workspace, edited: bool
) -> None:
    """With prune off, or a file edited since we wrote it, nothing is removed: the backup
    stays where it is, and the log says where."""
    config(workspace, "" if edited else "\n[sync]\nprune = false\n")
    creds = workspace.home / ".aws/credentials"
    backup = workspace.home / ".aws/credentials.secret-agent-orig"
    hand_made(creds)
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    assert workspace.run("run", "--once").returncode == 0
    if edited:
        creds.write_text("edited since")
    delete(dev_server, "aws")
    result = workspace.run("run", "--once")
    assert backup.read_text() == MINE
    assert creds.read_text() == ("edited since" if edited else f"{CANARY}-aws")
    [left] = events(result, "original_left")
    assert left["backup"] == str(backup)


def test_status_shows_where_the_original_is(dev_server: DevServer, workspace: Workspace) -> None:
    from tests.e2e.daemon_harness import Daemon, NotifySocket, daemon_config, running

    daemon_config(workspace, interval="30s")
    creds = workspace.home / ".aws/credentials"
    hand_made(creds)
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    notify = NotifySocket()
    try:
        with running(Daemon(workspace, env={"NOTIFY_SOCKET": notify.path})) as daemon:
            notify.wait_for("READY=1", timeout=15)
            status = workspace.run("status")
            as_json = json.loads(workspace.run("status", "--json").stdout)
            assert daemon.stop() == 0
    finally:
        notify.close()
    assert f"your file that was there: {creds}.secret-agent-orig" in status.stdout
    [row] = as_json["secrets"]
    assert row["backup"] == f"{creds}.secret-agent-orig"


def test_a_file_of_yours_already_holding_the_value_is_still_yours(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Same bytes as the secret, but made by hand: kept aside like any other, and still
    there once the secret is deleted (adopting it would delete it)."""
    config(workspace)
    creds = workspace.home / ".aws/credentials"
    value = f"{CANARY}-same"
    hand_made(creds, value)
    create(dev_server, "aws", value, file_path="~/.aws/credentials")
    first = workspace.run("run", "--once")
    assert first.returncode == 0, first.stderr
    assert events(first, "original_kept")
    delete(dev_server, "aws")
    gone = workspace.run("run", "--once")
    assert gone.returncode == 0, gone.stderr
    assert creds.read_text() == value
    assert not (workspace.home / ".aws/credentials.secret-agent-orig").exists()


def test_the_original_moved_back_by_hand_is_kept_aside_again(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """`mv credentials.secret-agent-orig credentials`: the next pass sees the user's file,
    not a tampered one of ours, and keeps it aside again instead of writing over it."""
    config(workspace)
    creds = workspace.home / ".aws/credentials"
    backup = workspace.home / ".aws/credentials.secret-agent-orig"
    hand_made(creds)
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    assert workspace.run("run", "--once").returncode == 0
    backup.rename(creds)
    again = workspace.run("run", "--once")
    assert again.returncode == 0, again.stderr
    assert backup.read_text() == MINE
    assert creds.read_text() == f"{CANARY}-aws"
    delete(dev_server, "aws")
    assert workspace.run("run", "--once").returncode == 0
    assert creds.read_text() == MINE


def test_prune_off_remembers_the_original_when_the_secret_comes_back(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Prune off: a deleted secret's file stays over the original (said once); the same
    secret back at that path is written there again, not refused as 'a second backup'."""
    config(workspace, "\n[sync]\nprune = false\n")
    creds = workspace.home / ".aws/credentials"
    backup = workspace.home / ".aws/credentials.secret-agent-orig"
    hand_made(creds)
    create(dev_server, "aws", f"{CANARY}-aws", file_path="~/.aws/credentials")
    assert workspace.run("run", "--once").returncode == 0
    delete(dev_server, "aws")
    left = workspace.run("run", "--once")
    assert len(events(left, "original_left")) == 1
    quiet = workspace.run("run", "--once")
    assert not events(quiet, "original_left")
    create(dev_server, "aws", f"{CANARY}-aws-2", file_path="~/.aws/credentials")
    back = workspace.run("run", "--once")
    assert back.returncode == 0, back.stderr
    assert creds.read_text() == f"{CANARY}-aws-2"
    assert backup.read_text() == MINE
