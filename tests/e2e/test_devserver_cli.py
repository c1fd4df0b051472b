"""`python -m secret_agent.devserver` as a real process: handshake, requests, signals.

The printed handshake lines are the only readiness signal; every wait has a deadline.
Values are canaries, and each test checks none reached the server's stdout or stderr.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

HANDSHAKE_TIMEOUT = 15.0
EXIT_TIMEOUT = 15.0
SECRETS = "/api/v2/users/me/secrets"


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CODER_", "SECRET_AGENT_")) and k not in {"NOTIFY_SOCKET"}
    }
    env["HOME"] = str(tmp_path / "home")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DevServerProcess:
    """The dev server as a subprocess, its stdout read line by line on a thread."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.stderr_path = tmp_path / f"stderr-{uuid.uuid4().hex[:8]}.txt"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "secret_agent.devserver", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_clean_env(tmp_path),
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def handshake(self) -> dict[str, str]:
        """The three handshake lines, waited for with a deadline."""
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        got: list[str] = []
        while len(got) < 3:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                pytest.fail(f"dev server exited before its handshake: {self.stderr()}")
            got.append(line.rstrip("\n"))
        prefix = "secret-agent dev-server listening on "
        assert got[0].startswith(prefix)
        url = got[0].removeprefix(prefix)
        assert got[1] == f"CODER_URL={url}"
        assert got[2].startswith("CODER_SESSION_TOKEN=")
        return {"url": url, "token": got[2].removeprefix("CODER_SESSION_TOKEN=")}

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send `sig` and return the exit code, waited for with a deadline."""
        self.proc.send_signal(sig)
        return self.wait()

    def wait(self) -> int:
        code = self.proc.wait(timeout=EXIT_TIMEOUT)
        self._reader.join(timeout=EXIT_TIMEOUT)
        return code

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def output(self) -> str:
        return "".join(self.stdout) + self.stderr()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


Starter = Callable[..., DevServerProcess]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Starter]:
    started: list[DevServerProcess] = []

    def run(*args: str) -> DevServerProcess:
        process = DevServerProcess(tmp_path, *args)
        started.append(process)
        return process

    yield run
    for process in started:
        process.close()


def _canary() -> str:
    return f"canary-{uuid.uuid4().hex}"


def test_handshake_request_and_sigterm_exit_0(start: Starter, tmp_path: Path) -> None:
    """The server prints its URL and token, serves a seeded secret, and exits 0 on TERM."""
    seeded, posted = _canary(), _canary()
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "users": [
                    {
                        "username": "developer",
                        "secrets": [{"name": "db", "value": seeded, "env_name": "DB_PASSWORD"}],
                    }
                ]
            }
        )
    )
    server = start("--seed", str(seed), "--inline-values")
    hello = server.handshake()
    with httpx.Client(base_url=hello["url"], headers={"Coder-Session-Token": hello["token"]}) as c:
        assert c.get(SECRETS + "/db").json()["value"] == seeded
        created = c.post(SECRETS, json={"name": "api", "value": posted, "file_path": "~/.api"})
        assert created.status_code == 201
        assert [s["name"] for s in c.get(SECRETS).json()] == ["api", "db"]
    assert server.stop(signal.SIGTERM) == 0
    output = server.output()
    assert seeded not in output
    assert posted not in output
    assert "Traceback" not in output


def test_sigint_also_exits_0(start: Starter) -> None:
    """Ctrl-C stops the server cleanly with exit code 0 and no traceback."""
    server = start()
    hello = server.handshake()
    assert httpx.get(hello["url"] + "/api/v2/buildinfo").status_code == 200
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.output()


def test_persisted_store_and_token_survive_a_restart(start: Starter, tmp_path: Path) -> None:
    """With --persist and --token, a restarted server still has the secret and the token."""
    value = _canary()
    state = tmp_path / "devserver.json"
    token = "AbCdEfGhIj-0123456789abcdefghijklmn"
    first = start("--persist", str(state), "--token", token, "--inline-values")
    hello = first.handshake()
    assert hello["token"] == token
    with httpx.Client(base_url=hello["url"], headers={"Coder-Session-Token": token}) as c:
        assert c.post(SECRETS, json={"name": "s", "value": value, "env_name": "S"}).is_success
    assert first.stop() == 0

    second = start("--persist", str(state), "--inline-values")
    again = second.handshake()
    assert again["token"] == token  # the persisted token is reused, not replaced
    with httpx.Client(base_url=again["url"], headers={"Coder-Session-Token": token}) as c:
        assert c.get(SECRETS + "/s").json()["value"] == value
    assert second.stop() == 0
    assert value not in first.output() + second.output()


def test_bad_seed_exits_2_with_a_message_naming_the_file(start: Starter, tmp_path: Path) -> None:
    """A seed Coder would refuse stops the server before it listens, with one line."""
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"users": [{"username": "dev", "secrets": [
        {"name": "s", "value": "canary-bad-seed", "env_name": "LD_PRELOAD"}
    ]}]}))  # fmt: skip
    server = start("--seed", str(seed))
    assert server.wait() == 2
    assert server.stdout == []
    message = server.stderr()
    assert str(seed) in message
    assert "users[0].secrets[0]" in message
    assert "LD_" in message
    assert "canary-bad-seed" not in message
    assert "Traceback" not in message


def test_missing_extra_prints_what_to_install(tmp_path: Path) -> None:
    """Without uvicorn, main says to install secret-agent[devserver] and exits 1."""
    program = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "import argparse\n"
        "from secret_agent.devserver import add_arguments, main\n"
        "parser = argparse.ArgumentParser(); add_arguments(parser)\n"
        "raise SystemExit(main(parser.parse_args([]), sys.stdout))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env=_clean_env(tmp_path),
        timeout=EXIT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 1
    assert "secret-agent[devserver]" in done.stderr
    assert done.stdout == ""
