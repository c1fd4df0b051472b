"""`secret-agent exec` and `exec --watch` as real processes against the dev server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak
from tests.e2e.daemon_harness import Daemon, NotifySocket, daemon_config, running, wait_until

CANARY = "canary-exec-9d41"
PY = sys.executable


def child(code: str) -> list[str]:
    """A tiny Python child program (trio-style), unbuffered."""
    return [PY, "-u", "-c", textwrap.dedent(code)]


def create(server: DevServer, name: str, value: str, **kw: str) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as c:
        c.create_secret(name=name, value=Secret(value), **kw)


def spawn(workspace: Workspace, *args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "secret_agent", "exec", *args],
        env=workspace.env,
        cwd=workspace.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def finish(proc: subprocess.Popen[str]) -> str:
    """Kill the process if it still runs, reap it, close its pipes; return its stderr."""
    if proc.poll() is None:
        proc.kill()
    _out, err = proc.communicate()
    return err or ""


class Lines:
    """Reads a pipe line by line with deadlines (no fixed sleeps)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[str] = []

    def wait_for(self, text: str, timeout: float = 10) -> None:
        import selectors

        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)

        def found() -> bool:
            if any(text in line for line in self.seen):
                return True
            if sel.select(timeout=0.05):
                line = self.proc.stdout.readline()  # type: ignore[union-attr]
                if line:
                    self.seen.append(line.rstrip("\n"))
            return any(text in line for line in self.seen)

        wait_until(found, timeout, f"child output {text!r}")


@pytest.mark.parametrize("code", [0, 7])
def test_exit_code_is_the_commands_own(
    dev_server: DevServer, workspace: Workspace, code: int
) -> None:
    """execve: the command's exit code is secret-agent's exit code."""
    create(dev_server, "tok", CANARY, env_name="TOK")
    result = workspace.run("exec", "--", *child(f"import sys; sys.exit({code})"))
    assert result.returncode == code, result.stderr


def test_env_has_secret_over_inherited_and_files_exist(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Secret variables win over inherited ones; the secret file is there before the command."""
    create(dev_server, "tok", CANARY, env_name="TOK", file_path="~/tok.txt")
    prog = child("""
        import os, pathlib
        print(os.environ["TOK"] == os.environ["EXPECT"])
        print(pathlib.Path(os.environ["HOME"], "tok.txt").read_text() == os.environ["EXPECT"])
    """)
    env = {"TOK": "inherited", "EXPECT": CANARY}
    result = workspace.run("exec", "--", *prog, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
    assert_no_leak([CANARY], result.stdout, result.stderr)


def test_killed_by_signal_is_native_under_execve(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """Without --watch the process *is* the command: a SIGKILL kills it as such."""
    create(dev_server, "tok", CANARY, env_name="TOK")
    prog = child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    result = workspace.run("exec", "--", *prog)
    assert result.returncode == -signal.SIGKILL


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGKILL, 137), (signal.SIGTERM, 143)])
def test_watch_reports_128_plus_signal(
    dev_server: DevServer, workspace: Workspace, sig: signal.Signals, expected: int
) -> None:
    """Under --watch a child killed by signal N makes exec exit 128+N."""
    create(dev_server, "tok", CANARY, env_name="TOK")
    prog = child(f"import os, signal; os.kill(os.getpid(), {int(sig)})")
    result = workspace.run("exec", "--watch", "--", *prog)
    assert result.returncode == expected, result.stderr


def test_watch_forwards_sigterm_to_a_trapping_child(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """SIGTERM to exec --watch reaches the child, which exits cleanly with its own code."""
    create(dev_server, "tok", CANARY, env_name="TOK")
    prog = child("""
        import signal, sys, time
        def term(*_):
            print("got-term", flush=True)
            sys.exit(42)
        signal.signal(signal.SIGTERM, term)
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    """)
    proc = spawn(workspace, "--watch", "--", *prog)
    try:
        lines = Lines(proc)
        lines.wait_for("ready")
        proc.send_signal(signal.SIGTERM)
        lines.wait_for("got-term")
        assert proc.wait(10) == 42
    finally:
        finish(proc)


def _watch_child() -> list[str]:
    return child("""
        import os, signal, time
        signal.signal(signal.SIGHUP, lambda *_: print("hup", flush=True))
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        print("start", os.environ["TOK"] == os.environ.get("ROTATED"), flush=True)
        while True:
            time.sleep(0.05)
    """)


@pytest.mark.parametrize("on_change", ["restart", "signal:SIGHUP"])
def test_watch_acts_on_rotation(
    dev_server: DevServer, workspace: Workspace, on_change: str
) -> None:
    """A rotation restarts the child with the new value, or sends it the chosen signal."""
    daemon_config(workspace, interval="200ms")
    create(dev_server, "tok", f"{CANARY}-1", env_name="TOK")
    env = {**workspace.env, "ROTATED": f"{CANARY}-2"}
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "secret_agent",
            "exec",
            "--watch",
            "--debounce",
            "100ms",
            "--on-change",
            on_change,
            "--",
            *_watch_child(),
        ],
        env=env,
        cwd=workspace.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(proc)
        lines.wait_for("start False")
        with CoderClient(url=dev_server.url, token=Secret(dev_server.token)) as c:
            c.update_secret("tok", value=Secret(f"{CANARY}-2"))
        if on_change == "restart":
            lines.wait_for("start True")
        else:
            lines.wait_for("hup")
            assert lines.seen.count("start False") == 1  # not restarted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        err = finish(proc)
    assert_no_leak([f"{CANARY}-1", f"{CANARY}-2"], "\n".join(lines.seen), err)


def test_watch_child_exiting_at_once_is_not_restarted(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """A child that exits at once ends exec with its code: no restart loop."""
    daemon_config(workspace, interval="100ms")
    create(dev_server, "tok", CANARY, env_name="TOK")
    result = workspace.run("exec", "--watch", "--", *child("print('once'); raise SystemExit(5)"))
    assert result.returncode == 5
    assert result.stdout.count("once") == 1
    assert result.stderr.count('"child_started"') == 1


def test_no_value_in_any_argv(dev_server: DevServer, workspace: Workspace) -> None:
    """While exec --watch runs, no process's /proc/*/cmdline holds a secret value."""
    create(dev_server, "tok", CANARY, env_name="TOK", file_path="~/tok")
    prog = child("print('ready', flush=True)\nimport time\nwhile True: time.sleep(0.05)")
    proc = spawn(workspace, "--watch", "--", *prog)
    try:
        Lines(proc).wait_for("ready")
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                data = cmdline.read_bytes()
            except OSError:
                continue
            assert CANARY.encode() not in data, f"value in {cmdline}"
    finally:
        proc.terminate()
        proc.wait(10)
        finish(proc)


def test_server_down_runs_from_last_known_good_and_says_so(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """With Coder gone, exec warns and runs the command with the last good values."""
    create(dev_server, "tok", CANARY, env_name="TOK")
    assert workspace.run("run", "--once").returncode == 0
    dev_server.server.stop()
    prog = child("import os; print(os.environ['TOK'] == os.environ['EXPECT'])")
    result = workspace.run("exec", "--", *prog, env={"EXPECT": CANARY})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert "last known good" in result.stderr
    assert "cannot reach Coder" in result.stderr
    strict = workspace.run("exec", "--require-fresh", "--", "true")
    assert strict.returncode == 4
    assert "--require-fresh" in strict.stderr
    assert_no_leak([CANARY], result.stderr, strict.stderr)


def test_fast_path_asks_no_network_and_imports_nothing_heavy(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """With a fresh daemon, exec makes no request and never imports httpx/asyncio/structlog."""
    daemon_config(workspace, interval="30s")
    create(dev_server, "tok", CANARY, env_name="TOK")
    notify = NotifySocket()
    try:
        with running(Daemon(workspace, env={"NOTIFY_SOCKET": notify.path})) as daemon:
            notify.wait_for("READY=1", timeout=10)
            dev_server.request_log.clear()
            result = subprocess.run(
                [
                    PY,
                    "-X",
                    "importtime",
                    "-m",
                    "secret_agent",
                    "exec",
                    "--",
                    *child("import os; print(os.environ['TOK'] == os.environ['EXPECT'])"),
                ],
                env={**workspace.env, "EXPECT": CANARY},
                cwd=workspace.home,
                capture_output=True,
                text=True,
                check=False,
            )
            assert daemon.stop() == 0
    finally:
        notify.close()
    assert result.returncode == 0
    assert result.stdout.strip() == "True"
    assert dev_server.request_log == []
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "secret_agent" in imported  # the check can see imports at all
    assert not imported & {"httpx", "asyncio", "structlog", "tenacity", "watchfiles"}


def test_pid1_reaps_orphaned_grandchildren(dev_server: DevServer, workspace: Workspace) -> None:
    """As PID 1 of a fresh PID namespace, exec --watch reaps orphans: no zombies remain."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare(1) to make a PID namespace")
    probe = subprocess.run(
        [unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"unshare --pid is not permitted here: {probe.stderr.decode().strip()}")
    create(dev_server, "tok", CANARY, env_name="TOK")
    # The child double-forks sleepers (their parent exits at once, so PID 1 inherits
    # them), then waits (up to 5 s) for every sleeper to be gone from its namespace's
    # /proc: an exited but unreaped one stays there as a zombie.
    prog = child("""
        import os, pathlib, subprocess, time
        assert os.getppid() == 1, os.getppid()
        subprocess.run(["sh", "-c", "for i in 1 2 3; do (sleep 0.1 &) ; done"], check=True)
        def sleepers():
            out = []
            for p in pathlib.Path("/proc").glob("[0-9]*/stat"):
                try:
                    text = p.read_text()
                except OSError:
                    continue
                if "(sleep)" in text:
                    out.append(text.rsplit(")", 1)[1].split()[0])
            return out
        deadline = time.monotonic() + 5
        while sleepers() and time.monotonic() < deadline:
            time.sleep(0.02)
        print("zombies", sleepers().count("Z"), "left", len(sleepers()), flush=True)
    """)
    result = subprocess.run(
        [
            unshare,
            "--pid",
            "--fork",
            "--mount-proc",
            PY,
            "-m",
            "secret_agent",
            "exec",
            "--watch",
            "--",
            *prog,
        ],
        env=workspace.env,
        cwd=workspace.home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "zombies 0 left 0" in result.stdout, result.stdout


def test_exec_flags_never_touch_the_daemons_files_or_borrow_its_values(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """exec --env-file '' keeps the daemon's env file; another user never gets its values."""
    daemon_config(workspace, interval="30s")
    create(dev_server, "tok", CANARY, env_name="TOK", file_path="~/tok")
    notify = NotifySocket()
    try:
        with running(Daemon(workspace, env={"NOTIFY_SOCKET": notify.path})) as daemon:
            notify.wait_for("READY=1", timeout=10)
            env_before = workspace.env_file.read_bytes()
            (workspace.home / "tok").unlink()  # so exec has to put a file back itself
            quiet = workspace.run("exec", "--env-file", "", "--", "true")
            assert quiet.returncode == 0, quiet.stderr
            assert workspace.env_file.read_bytes() == env_before
            assert (workspace.home / "tok").read_text() == CANARY
            other = workspace.run("exec", "--user", "somebody-else", "--", "true")
            assert other.returncode != 0  # asked Coder for that user: not the daemon's values
            assert daemon.stop() == 0
    finally:
        notify.close()
    assert_no_leak([CANARY], quiet.stderr, other.stderr)


def test_watch_stop_signal_during_a_restart_is_not_lost(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """SIGTERM while a restart is stopping the old child: no new child, exec exits."""
    daemon_config(workspace, interval="200ms")
    create(dev_server, "tok", f"{CANARY}-1", env_name="TOK")
    prog = child("""
        import signal, sys, time
        def term(*_):
            print("term", flush=True)
            time.sleep(1.0)  # a slow, clean shutdown
            sys.exit(0)
        signal.signal(signal.SIGTERM, term)
        print("start", flush=True)
        while True:
            time.sleep(0.05)
    """)
    proc = spawn(workspace, "--watch", "--debounce", "100ms", "--", *prog)
    try:
        lines = Lines(proc)
        lines.wait_for("start")
        with CoderClient(url=dev_server.url, token=Secret(dev_server.token)) as c:
            c.update_secret("tok", value=Secret(f"{CANARY}-2"))
        lines.wait_for("term")  # the restart is stopping the old child
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        finish(proc)
    assert lines.seen.count("start") == 1
