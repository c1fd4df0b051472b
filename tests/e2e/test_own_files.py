"""A secret can never rewrite secret-agent itself (issue 8, item 6).

The config file, state_dir and everything in it, the token file and the `coder login`
directory are refused by name, also when reached through a symlinked directory that
stays inside the allowed roots; the other secrets still apply.
"""

from __future__ import annotations

import json

import pytest

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace

CANARY = "canary-own-91c4"

OWN = [
    ("config-file", "~/.config/secret-agent/config.toml", "config file"),
    ("ledger", "~/.local/state/secret-agent/ledger.json", "state_dir"),
    ("status", "~/.local/state/secret-agent/status.json", "state_dir"),
    ("lock", "~/.local/state/secret-agent/lock", "state_dir"),
    ("new-in-state-dir", "~/.local/state/secret-agent/extra", "state_dir"),
    ("coder-session", "~/.config/coderv2/session", "coder login"),
    ("coder-url", "~/.config/coderv2/url", "coder login"),
    ("via-symlinked-dir", "~/cfg/config.toml", "config file"),
]


def create(server: DevServer, name: str, value: str, **kw: str) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as client:
        client.create_secret(name=name, value=Secret(value), **kw)


@pytest.mark.parametrize(("case", "file_path", "named"), OWN, ids=[c[0] for c in OWN])
def test_a_secret_targeting_our_own_files_is_refused_by_name(
    dev_server: DevServer, workspace: Workspace, case: str, file_path: str, named: str
) -> None:
    """The target is refused naming what it is; it is untouched; the rest applies."""
    (workspace.home / "cfg").symlink_to(workspace.home / ".config/secret-agent")
    assert workspace.run("run", "--once").returncode == 0  # state_dir and ledger exist
    coder = workspace.home / ".config/coderv2"
    coder.mkdir(parents=True, exist_ok=True)
    for name, text in (("session", dev_server.token), ("url", dev_server.url)):
        (coder / name).write_text(text + "\n")
        (coder / name).chmod(0o600)
    target = workspace.home / file_path.removeprefix("~/")
    before = target.read_bytes() if target.exists() else None
    create(dev_server, case, f'{CANARY}\n[sync]\nallowed_roots = ["/"]\n', file_path=file_path)
    create(dev_server, "innocent", f"{CANARY}-ok", file_path="~/ok.txt")
    result = workspace.run("run", "--once")
    assert result.returncode == 1, result.stderr
    assert (workspace.home / "ok.txt").read_text() == f"{CANARY}-ok"
    after = target.read_bytes() if target.exists() else None
    if case not in ("ledger", "status"):  # secret-agent itself rewrites those two
        assert after == before
    assert CANARY not in (after or b"").decode("utf-8", "replace")
    refusals = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and '"secret_refused"' in line
    ]
    assert [r["secret"] for r in refusals] == [case]
    assert named in refusals[0]["error"]
    assert "own files" in refusals[0]["error"]


def test_the_refusal_holds_on_the_next_run(dev_server: DevServer, workspace: Workspace) -> None:
    """After a refused attempt on the config file, allowed_roots is still the home."""
    create(
        dev_server,
        "takeover",
        '[sync]\nallowed_roots = ["/"]\n',
        file_path="~/.config/secret-agent/config.toml",
    )
    create(dev_server, "escape", f"{CANARY}-escape", file_path="/tmp/secret-agent-escape-test")
    first = workspace.run("run", "--once")
    second = workspace.run("run", "--once")
    assert (first.returncode, second.returncode) == (1, 1)
    assert "allowed_roots" not in workspace.config_path.read_text()
    assert "outside" in second.stderr
