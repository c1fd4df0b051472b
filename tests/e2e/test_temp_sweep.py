"""A `run --once` SIGKILLed while a temp file full of values exists: the next pass
sweeps it, and the file it was for is whole."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from secret_agent.devserver import Limits, Store, ThreadedDevServer
from tests.conftest import DEV_USER, Workspace, assert_no_leak

CANARY = "canary-sweep-e2e-7c41d9"
SECRETS = 160
# Coder's cap per value: 160 of them make an env file of about 4 MiB, whose temp file
# lives for the ~10 ms its write and fsync take.
VALUE_BYTES = 24 * 1024 - 64
TEMP = re.compile(r"\..+\.secret-agent\.[0-9a-f]{12}\.tmp", re.DOTALL)
ATTEMPTS = 5


def value(i: int) -> str:
    return f"{CANARY}-{i:03d}-" + "v" * VALUE_BYTES


@pytest.fixture
def big_server() -> Iterator[tuple[str, str]]:
    """A dev server holding SECRETS env-only secrets of Coder's maximum value size."""
    store = Store(
        limits=Limits(
            max_secrets=SECRETS, max_total_value_bytes=1 << 30, max_env_value_bytes=1 << 30
        )
    )
    store.add_user(DEV_USER)
    token = store.issue_token(DEV_USER)
    for i in range(SECRETS):
        store.create_secret(DEV_USER, name=f"big-{i:03d}", value=value(i), env_name=f"BIG_{i:03d}")
    with ThreadedDevServer(store, inline_values=True) as server:
        yield server.url, token


def workspace_at(root: Path, url: str, token: str) -> Workspace:
    home = root / "home"
    home.mkdir(parents=True)
    config = home / ".config/secret-agent/config.toml"
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CODER_URL": url,
        "CODER_SESSION_TOKEN": token,
        "SECRET_AGENT_CONFIG": str(config),
        "LANG": "C.UTF-8",
    }
    ws = Workspace(home=home, config_path=config, env=env)
    ws.write_config('[log]\nformat = "json"\nlevel = "info"\n')
    return ws


def temps_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if TEMP.fullmatch(p.name))


def wait_until_fine(predicate: Callable[[], bool], timeout: float) -> None:
    """`wait_until` with a 1 ms poll: the temp file lives for about 10 ms."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        time.sleep(0.001)


def temp_with_bytes(directory: Path) -> Path | None:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return None
    for entry in entries:
        try:
            if TEMP.fullmatch(entry.name) and entry.stat(follow_symlinks=False).st_size > 0:
                return Path(entry.path)
        except FileNotFoundError:
            continue  # renamed into place meanwhile
    return None


def kill_while_writing(ws: Workspace, log: Path) -> Path | None:
    """Start `run --once`, SIGKILL it while the env file's temp holds bytes; the temp
    file left, or None when the pass got past it first (then try again)."""
    found: list[Path] = []
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "secret_agent", "run", "--once"],
            env=ws.env,
            cwd=ws.home,
            stdout=out,
            stderr=out,
        )
        try:

            def seen() -> bool:
                temp = temp_with_bytes(ws.env_file.parent)
                if temp is not None:
                    proc.send_signal(signal.SIGSTOP)  # frozen: it can no longer rename
                    found.append(temp)
                return temp is not None or proc.poll() is not None

            wait_until_fine(seen, timeout=60)
        finally:
            proc.kill()
            proc.wait(timeout=10)
    if not found or not found[0].exists():
        return None
    assert proc.returncode == -signal.SIGKILL
    return found[0]


def bash_values(env_file: Path, names: list[str]) -> dict[str, str]:
    script = 'set -a; . "$1"; shift; for n in "$@"; do printf "%s\\0" "${!n-__UNSET__}"; done'
    out = subprocess.run(
        ["/usr/bin/env", "-i", "bash", "-c", script, "bash", str(env_file), *names],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return dict(zip(names, out.split("\0")[:-1], strict=True))


def test_temp_file_of_a_sigkilled_run_is_swept_by_the_next(
    big_server: tuple[str, str], tmp_path: Path
) -> None:
    """SIGKILL `run --once` while the env file's temp holds values: the temp survives
    the kill; the next run removes it, leaves no temp file anywhere, and the env file
    is whole."""
    url, token = big_server
    for attempt in range(ATTEMPTS):
        ws = workspace_at(tmp_path / f"attempt-{attempt}", url, token)
        left = kill_while_writing(ws, tmp_path / f"killed-{attempt}.log")
        if left is not None:
            break
    else:
        pytest.fail(f"no temp file caught in {ATTEMPTS} attempts")
    assert left.parent == ws.env_file.parent
    assert CANARY.encode() in left.read_bytes()[:4096]  # a value rests in it
    assert not ws.env_file.exists()

    result = ws.run("run", "--once", timeout=60)
    assert result.returncode == 0, result.stderr
    assert temps_under(ws.home) == []
    names = [f"BIG_{i:03d}" for i in range(SECRETS)]
    assert bash_values(ws.env_file, names) == {name: value(i) for i, name in enumerate(names)}
    assert_no_leak([CANARY], result.stdout, result.stderr)
