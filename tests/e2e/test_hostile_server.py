"""`secret-agent run --once` as a real subprocess against hostile loopback servers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import Workspace
from tests.integration.hostile_servers import Reply, raw_server, response

TOKEN = "sessiontoken-canary-e2e-7c1d-0123456789abcdef"
# `coder.timeout` is 1 s; the rest is starting Python on a loaded 2-core CI machine.
BOUND = 15.0


def workspace_for(tmp_path: Path, url: str) -> Workspace:
    home = tmp_path / "home"
    home.mkdir()
    config_path = home / ".config/secret-agent/config.toml"
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CODER_URL": url,
        "CODER_SESSION_TOKEN": TOKEN,
        "SECRET_AGENT_CONFIG": str(config_path),
        "LANG": "C.UTF-8",
    }
    ws = Workspace(home=home, config_path=config_path, env=env)
    ws.write_config('[coder]\ntimeout = "1s"\n\n[log]\nformat = "json"\nlevel = "debug"\n')
    return ws


def test_run_once_against_a_trickling_server_exits_4_naming_the_timeout(tmp_path: Path) -> None:
    """A list answered one byte every 0.2 s: exit 4 after about coder.timeout, never a hang."""
    with raw_server(lambda _: Reply(b"", response("200 OK", b"[]"))) as srv:
        ws = workspace_for(tmp_path, srv.url)
        start = time.monotonic()
        result = ws.run("run", "--once", timeout=60)
        took = time.monotonic() - start
        assert len(srv.requests) >= 1
    assert result.returncode == 4, result.stderr
    assert took < BOUND, took
    assert "/api/v2/users/me/secrets: no complete answer within 1s" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_run_once_against_a_redirect_exits_4_naming_the_host(tmp_path: Path) -> None:
    """A 302 to another host: exit 4, the message says "redirect" and names that host."""
    with raw_server(lambda _: Reply(response("404 Not Found"))) as elsewhere:
        location = f"http://127.0.0.1:{elsewhere.port}/api/v2/users/me/secrets"
        answer = response("302 Found", headers=f"Location: {location}\r\n", ctype="text/html")
        with raw_server(lambda _: Reply(answer)) as coder:
            result = workspace_for(tmp_path, coder.url).run("run", "--once", timeout=60)
        assert elsewhere.connections == 0
    assert result.returncode == 4, result.stderr
    assert f"a redirect to 127.0.0.1:{elsewhere.port}" in result.stderr
    assert "never follows redirects" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
