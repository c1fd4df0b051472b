"""`exec` and the kernel's execve limits (issue 8, item 11), as real processes.

Coder refuses a value over 24 KiB (and 200 KiB per user), so no such value comes from
Coder itself; it does from a server with other limits, which the dev server here plays
with its caps lifted. The child runs with its stack limit at 8 MiB, so the kernel's
ARG_MAX for it is 2 MiB whatever `ulimit -s` the test runs under.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from secret_agent.devserver import Limits, Store, ThreadedDevServer, validation
from tests.conftest import DEV_USER, DevServer, Workspace, assert_no_leak
from tests.e2e.daemon_harness import daemon_config

if sys.platform != "linux":
    pytest.skip("Linux's execve limits", allow_module_level=True)

CANARY = "canary-argmax-3b90"
PY = sys.executable
STACK = 8 * 1024 * 1024  # so ARG_MAX = 2 MiB
ARG_MAX = STACK // 4
MAX_ARG_STRLEN = 131071  # Linux's limit for one NAME=value, without its NUL


@pytest.fixture
def dev_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DevServer]:
    """The dev server (inline values) with Coder's size caps lifted."""
    monkeypatch.setattr(validation, "MAX_VALUE_BYTES", 1 << 22)
    store = Store(limits=Limits(max_total_value_bytes=1 << 30, max_env_value_bytes=1 << 30))
    store.add_user(DEV_USER)
    token = store.issue_token(DEV_USER)
    with ThreadedDevServer(store, inline_values=True) as server:
        yield DevServer(url=server.url, token=token, store=store, server=server)


def _stack_8mib() -> None:
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    resource.setrlimit(resource.RLIMIT_STACK, (STACK, hard))


def run_exec(
    workspace: Workspace, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m secret_agent exec ARGS` with an 8 MiB stack limit."""
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if hard != resource.RLIM_INFINITY and hard < STACK:
        pytest.skip(f"the hard stack limit ({hard}) is under 8 MiB")
    return subprocess.run(
        [PY, "-m", "secret_agent", "exec", *args],
        env=workspace.env,
        cwd=workspace.home,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=_stack_8mib,
    )


def quiet_config(workspace: Workspace) -> None:
    # warning: the daemon side of --watch logs every pass at info, and these values are big.
    workspace.write_config('[log]\nformat = "json"\nlevel = "warning"\n')


def child(code: str) -> list[str]:
    return [PY, "-u", "-c", textwrap.dedent(code)]


REPORT_ENV = child("""
    import os
    print("ran", "BIG" in os.environ, os.environ.get("SMALL") == os.environ["EXPECT"])
""")


@pytest.mark.parametrize("watch", [False, True], ids=["exec", "exec-watch"])
def test_variable_over_max_arg_strlen_is_left_out_and_the_command_runs(
    dev_server: DevServer, workspace: Workspace, watch: bool
) -> None:
    """A 200 KB secret variable is left out (exec warns, naming it); the others are set."""
    quiet_config(workspace)
    big = CANARY + "b" * 200_000
    dev_server.store.create_secret(DEV_USER, name="big-one", value=big, env_name="BIG")
    dev_server.store.create_secret(DEV_USER, name="small", value=f"{CANARY}-s", env_name="SMALL")
    workspace.env["EXPECT"] = f"{CANARY}-s"
    result = run_exec(workspace, *(["--watch"] if watch else []), "--", *REPORT_ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ran", "False", "True"]
    if not watch:  # (--watch drops the environment's refusals unreported: see the report)
        warnings = [ln for ln in result.stderr.splitlines() if "left out of the environment" in ln]
        assert len(warnings) == 1, result.stderr
        assert "'big-one'" in warnings[0]
        assert "BIG=" in warnings[0]
        assert str(MAX_ARG_STRLEN) in warnings[0]
    assert_no_leak([big, f"{CANARY}-s"], result.stdout, result.stderr)


def _many_large(server: DevServer, count: int) -> dict[str, int]:
    """`count` secrets of about 100 KB with distinct sizes; NAME=value bytes by name."""
    sizes = {}
    for i in range(count):
        name = f"LARGE_{i:02d}"
        value = f"{CANARY}-{i:02d}-" + "v" * (100_000 + 500 * i)
        server.store.create_secret(DEV_USER, name=f"large-{i:02d}", value=value, env_name=name)
        sizes[name] = len(name) + 1 + len(value)
    return sizes


COUNT = ARG_MAX // 100_000 + 4  # 24: about 2.7 MB of variables against 2 MiB


@pytest.mark.parametrize("watch", [False, True], ids=["exec", "exec-watch"])
def test_environment_over_arg_max_is_a_clear_error_naming_the_largest(
    dev_server: DevServer, workspace: Workspace, watch: bool
) -> None:
    """Variables of 100 KB that add up to more than ARG_MAX: exit 126, and the error says
    so, naming the five largest variables with their sizes (never a value)."""
    quiet_config(workspace)
    sizes = _many_large(dev_server, COUNT)
    result = run_exec(
        workspace, *(["--watch"] if watch else []), "--", *child("print('ran', flush=True)")
    )
    assert result.returncode == 126, result.stderr[-2000:]
    assert "ran" not in result.stdout
    [error] = [ln for ln in result.stderr.splitlines() if ln.startswith("secret-agent: error:")]
    assert "cannot execute" in error
    assert f"more than the {ARG_MAX} that execve accepts" in error
    largest = sorted(sizes, key=sizes.__getitem__, reverse=True)
    for name in largest[:5]:
        assert f"{name} ({sizes[name]} bytes)" in error
    assert largest[5] not in error
    assert_no_leak([CANARY], result.stdout, result.stderr)


def test_watch_restart_over_arg_max_fails_clearly_with_126(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Under --watch, secrets added until the environment is too big: the restart fails,
    the log names the largest variables, and exec exits 126."""
    daemon_config(workspace, interval="200ms")
    workspace.write_config(workspace.config_path.read_text().replace('"debug"', '"info"'))
    dev_server.store.create_secret(DEV_USER, name="seed", value=f"{CANARY}-x", env_name="SEED")
    prog = child("""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("started", flush=True)
        while True:
            time.sleep(0.05)
    """)
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if hard != resource.RLIM_INFINITY and hard < STACK:
        pytest.skip(f"the hard stack limit ({hard}) is under 8 MiB")
    proc = subprocess.Popen(
        [PY, "-m", "secret_agent", "exec", "--watch", "--debounce", "100ms", "--", *prog],
        env=workspace.env,
        cwd=workspace.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_stack_8mib,  # noqa: PLW1509 - setrlimit only, takes no lock
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        sizes = _many_large(dev_server, COUNT)  # a pass may see some first: restarts that fit
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 126, err[-2000:]
    failures = [json.loads(ln) for ln in err.splitlines() if '"child_restart_failed"' in ln]
    assert len(failures) == 1, err[-2000:]
    largest = max(sizes, key=sizes.__getitem__)
    assert f"{largest} ({sizes[largest]} bytes)" in failures[0]["error"]
    assert "ARG_MAX" in failures[0]["error"]
    assert_no_leak([CANARY], out, err)
