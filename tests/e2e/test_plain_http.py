"""Plain http:// to a host that is not loopback gets one warning at start (item 13)."""

from __future__ import annotations

import json

import pytest

from secret_agent.config_types import crosses_network_in_clear
from tests.conftest import DevServer, Workspace
from tests.e2e.daemon_harness import Daemon, daemon_config, running, wait_until

# TEST-NET-1 (RFC 5737): never routed, so nothing is ever sent anywhere.
UNROUTABLE = "http://192.0.2.1:9"


@pytest.mark.parametrize(
    ("url", "in_clear"),
    [
        ("http://127.0.0.1:3000", False),
        ("http://127.8.9.10", False),
        ("http://[::1]:80", False),
        ("http://localhost:7080", False),
        ("http://dev.localhost", False),
        ("https://coder.example.com", False),
        ("http://coder.example.com", True),
        ("http://10.0.0.5:3000", True),
        ("http://[2001:db8::1]", True),
    ],
)
def test_which_urls_cross_the_network_in_clear(url: str, in_clear: bool) -> None:
    assert crosses_network_in_clear(url) is in_clear


def warnings(text: str) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and '"plain_http"' in line
    ]


def test_run_once_warns_for_plain_http_and_not_for_loopback(
    dev_server: DevServer, workspace: Workspace
) -> None:
    workspace.write_config('[coder]\ntimeout = "1s"\n\n[log]\nformat = "json"\n')
    loopback = workspace.run("run", "--once")
    assert loopback.returncode == 0, loopback.stderr
    assert warnings(loopback.stderr) == []
    remote = workspace.run("run", "--once", env={"CODER_URL": UNROUTABLE})
    assert remote.returncode == 4
    [warning] = warnings(remote.stderr)
    assert warning["url"] == UNROUTABLE and warning["level"] == "warning"
    check = workspace.run("check", env={"CODER_URL": UNROUTABLE})
    assert "plain http" in check.stdout


def test_the_daemon_warns_once_not_at_every_retry(workspace: Workspace) -> None:
    daemon_config(workspace, backoff_initial="100ms", backoff_max="200ms")
    workspace.env["CODER_URL"] = UNROUTABLE
    workspace.write_config(workspace.config_path.read_text() + '\n[coder]\ntimeout = "200ms"\n')
    with running(Daemon(workspace)) as daemon:
        wait_until(lambda: len(daemon.events("sync_failed")) >= 3, timeout=20, what="retries")
        assert daemon.stop() == 0
        assert len(warnings(daemon.log_text())) == 1
