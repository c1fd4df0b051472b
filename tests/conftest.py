"""Shared fixtures: a clean environment, a real dev server, a workspace, the CLI.

Every test that talks to Coder talks HTTP over loopback to the project's own dev
server; every CLI test runs `python -m secret_agent` as a real subprocess with a
constructed environment (no inherited CODER_* or XDG_*).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from secret_agent.devserver import Store, ThreadedDevServer
from secret_agent.redact import known_values

DEV_USER = "developer"
_STRIP_PREFIXES = ("CODER_", "SECRET_AGENT_", "XDG_")
_STRIP_NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CODER")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test passes or fails because of the developer's shell."""
    for name in list(os.environ):
        if name.startswith(_STRIP_PREFIXES) or name in _STRIP_NAMES:
            monkeypatch.delenv(name)
    known_values.clear()


@dataclass
class DevServer:
    """A running dev server with one user, and a token for it."""

    url: str
    token: str
    store: Store
    server: ThreadedDevServer

    @property
    def request_log(self) -> list[tuple[str, str]]:
        return self.server.request_log


@pytest.fixture
def dev_server() -> Iterator[DevServer]:
    """A fresh dev server (with --inline-values) on a free loopback port."""
    store = Store()
    store.add_user(DEV_USER)
    token = store.issue_token(DEV_USER)
    with ThreadedDevServer(store, inline_values=True) as server:
        yield DevServer(url=server.url, token=token, store=store, server=server)


@dataclass
class Workspace:
    """A fake home directory with a config file, and the env to run the CLI in it."""

    home: Path
    config_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.home / ".local/state/secret-agent"

    @property
    def env_file(self) -> Path:
        return self.home / ".config/secret-agent/secrets.env"

    def write_config(self, text: str) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 30,
        umask: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m secret_agent ARGS` as a subprocess in this workspace."""
        preexec = None if umask is None else (lambda: os.umask(umask) and None)
        return subprocess.run(
            [sys.executable, "-m", "secret_agent", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.home,
            preexec_fn=preexec,
        )


@pytest.fixture
def workspace(tmp_path: Path, dev_server: DevServer) -> Workspace:
    home = tmp_path / "home"
    home.mkdir()
    config_path = home / ".config/secret-agent/config.toml"
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CODER_URL": dev_server.url,
        "CODER_SESSION_TOKEN": dev_server.token,
        "SECRET_AGENT_CONFIG": str(config_path),
        "LANG": "C.UTF-8",
    }
    ws = Workspace(home=home, config_path=config_path, env=env)
    ws.write_config('[log]\nformat = "json"\nlevel = "debug"\n')
    return ws


def assert_no_leak(values: list[str], *texts: str) -> None:
    """Fail if any secret value appears in any of the texts."""
    for value in values:
        for text in texts:
            assert value not in text, "a secret value leaked into output"
