"""The command line: help, version, exit codes, and `check`."""

from __future__ import annotations

import subprocess
import sys

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak

CANARY = "canary-cli-31d9"


def test_help_and_version_work_without_network() -> None:
    """`--help` lists the commands; `--version` prints the version; both exit 0."""
    help_ = subprocess.run(
        [sys.executable, "-m", "secret_agent", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert help_.returncode == 0
    for command in ("run", "check", "dev-server"):
        assert command in help_.stdout
    version = subprocess.run(
        [sys.executable, "-m", "secret_agent", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert version.returncode == 0
    assert version.stdout.startswith("secret-agent ")


def test_help_does_not_import_httpx() -> None:
    """Parsing arguments costs no heavy imports."""
    code = (
        "import sys; from secret_agent.cli import build_parser; build_parser();"
        "print(sorted(m for m in ('httpx', 'structlog', 'starlette', 'uvicorn')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_bad_config_key_exits_2_naming_key_and_file(workspace: Workspace) -> None:
    """An unknown key is a usage error that names the key and the file."""
    workspace.write_config('[sync]\nintervall = "5s"\n')
    result = workspace.run("run", "--once")
    assert result.returncode == 2
    assert "sync.intervall" in result.stderr
    assert str(workspace.config_path) in result.stderr


def test_wrong_token_exits_3_and_keeps_files(dev_server: DevServer, workspace: Workspace) -> None:
    """A rejected token says so plainly, exits 3, and deletes nothing already applied."""
    with CoderClient(url=dev_server.url, token=Secret(dev_server.token)) as c:
        c.create_secret(name="k", value=Secret(CANARY), file_path="~/k.txt", env_name="K")
    assert workspace.run("run", "--once").returncode == 0
    bad = "Wrongtoken-000000000000000000000000"
    result = workspace.run("run", "--once", env={"CODER_SESSION_TOKEN": bad})
    assert result.returncode == 3
    assert "session token is missing, invalid or expired" in result.stderr
    assert bad not in result.stderr
    assert (workspace.home / "k.txt").read_text() == CANARY
    assert "K=" in workspace.env_file.read_text()


def test_unreachable_server_exits_4_and_keeps_files(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """With Coder gone, the pass fails with 4 and the disk stays as last applied."""
    with CoderClient(url=dev_server.url, token=Secret(dev_server.token)) as c:
        c.create_secret(name="k", value=Secret(CANARY), file_path="~/k.txt", env_name="K")
    assert workspace.run("run", "--once").returncode == 0
    before = workspace.env_file.read_bytes()
    dev_server.server.stop()
    result = workspace.run("run", "--once")
    assert result.returncode == 4
    assert "cannot reach Coder" in result.stderr
    assert (workspace.home / "k.txt").read_text() == CANARY
    assert workspace.env_file.read_bytes() == before


def test_check_shows_plan_without_values_and_writes_nothing(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """`check` lists names, paths, modes and short hashes, refusals too, and writes nothing."""
    with CoderClient(url=dev_server.url, token=Secret(dev_server.token)) as c:
        c.create_secret(name="good", value=Secret(CANARY), file_path="~/good.txt")
        c.create_secret(name="escapes", value=Secret(CANARY + "x"), file_path="/etc/evil")
    result = workspace.run("check")
    assert result.returncode == 1
    assert "write" in result.stdout
    assert "good" in result.stdout
    assert str(workspace.home / "good.txt") in result.stdout
    assert "0600" in result.stdout
    assert "escapes" in result.stdout
    assert "allowed_roots" in result.stdout
    assert not (workspace.home / "good.txt").exists()
    assert_no_leak([CANARY], result.stdout, result.stderr)
