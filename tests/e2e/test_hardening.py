"""No core dump of a process that holds values or tokens (issue 8, item 9), as real processes.

Each command starts with `ulimit -c unlimited`. From outside, the test reads its
`RLIMIT_CORE` in /proc/PID/limits (soft 0, hard kept), then raises the soft limit back
to unlimited with prlimit, so that only PR_SET_DUMPABLE 0 stands between a SIGABRT and a
core file, and aborts it: the wait status must say "killed by SIGABRT, no core dumped",
and no core file may appear in its working directory. A control process, started and
aborted the same way but without secret-agent, must dump a core here, or the absence of
one would prove nothing: without a core from the control the tests skip and say why.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak
from tests.e2e.daemon_harness import NotifySocket

if sys.platform != "linux":
    pytest.skip("core dumps and /proc/PID/limits as Linux has them", allow_module_level=True)

CANARY = "canary-core-5e17"
PY = sys.executable
INF = resource.RLIM_INFINITY
HARD = resource.getrlimit(resource.RLIMIT_CORE)[1]
HARD_TEXT = "unlimited" if HARD == INF else str(HARD)
WAIT = 20.0


def unlimited_core() -> None:
    """preexec_fn: `ulimit -c unlimited`, as far as the hard limit goes."""
    resource.setrlimit(resource.RLIMIT_CORE, (HARD, HARD))


def popen(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path,
    stdin: int | None = None,
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Popen with `ulimit -c unlimited` set in the child before it runs `argv`."""
    return subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=unlimited_core,  # noqa: PLW1509 - it calls setrlimit only, takes no lock
    )


def core_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) of "Max core file size" in /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


def cores_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("core"))


def abort_with_core_limit_lifted(proc: subprocess.Popen[bytes]) -> int:
    """Lift the process's core limit from outside, SIGABRT it, reap it: the wait status."""
    resource.prlimit(proc.pid, resource.RLIMIT_CORE, (HARD, HARD))
    assert core_limit(proc.pid)[0] == HARD_TEXT
    os.kill(proc.pid, signal.SIGABRT)
    _pid, status = os.waitpid(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    return status


def assert_aborted_without_core(status: int, cwd: Path) -> None:
    assert os.WIFSIGNALED(status), f"not killed by a signal: {status:#x}"
    assert os.WTERMSIG(status) == signal.SIGABRT
    assert not os.WCOREDUMP(status), "the kernel dumped a core"
    assert cores_in(cwd) == []


def finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:
        proc.kill()
    proc.communicate()  # reaps it (if not yet) and closes its pipes


@pytest.fixture(scope="module")
def cores_are_written(tmp_path_factory: pytest.TempPathFactory) -> None:
    """This machine dumps a core for an ordinary process aborted as the tests abort ours."""
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if HARD == 0:
        pytest.skip("the hard RLIMIT_CORE is 0 here: no process can dump a core to test")
    cwd = tmp_path_factory.mktemp("control")
    proc = popen(
        [PY, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=cwd,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        status = abort_with_core_limit_lifted(proc)
    finally:
        finish(proc)
    found = cores_in(cwd)
    for name in found:
        (cwd / name).unlink()
    if not os.WCOREDUMP(status):
        pytest.skip(
            f"a dumpable process dumps no core here (core_pattern {pattern!r}), so the"
            " absence of a core would prove nothing"
        )
    if not pattern.startswith("|") and "/" not in pattern:
        assert found, f"core_pattern {pattern!r} names a file in the cwd, and none was written"


def _config(workspace: Workspace, url: str | None = None) -> dict[str, str]:
    # A long coder.timeout: a command waiting on the silent server must still be waiting
    # when the test aborts it.
    workspace.write_config('[coder]\ntimeout = "60s"\n\n[log]\nformat = "json"\nlevel = "info"\n')
    return {**workspace.env, "CODER_URL": url} if url else dict(workspace.env)


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A loopback socket that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(WAIT)
        yield sock


def _create(server: DevServer, name: str, value: str, env_name: str) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as c:
        c.create_secret(name=name, value=Secret(value), env_name=env_name)


@pytest.mark.usefixtures("cores_are_written")
@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["run", "--once"],
        ["check"],
        ["exec", "--", "true"],
        ["exec", "--watch", "--", "true"],
    ],
    ids=["run", "run-once", "check", "exec", "exec-watch"],
)
def test_command_holding_the_token_dumps_no_core(
    workspace: Workspace, silent_server: socket.socket, tmp_path: Path, args: list[str]
) -> None:
    """Mid-request, token in memory, each command has soft core limit 0 and dumps no core."""
    host, port = silent_server.getsockname()[:2]
    env = _config(workspace, f"http://{host}:{port}")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = popen(
        [PY, "-m", "secret_agent", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn, _addr = silent_server.accept()  # the command is sending its first request
        with conn:
            conn.settimeout(WAIT)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                assert chunk, "the command closed the connection"
                request += chunk
            assert workspace.env["CODER_SESSION_TOKEN"].encode() in request
            assert core_limit(proc.pid) == ("0", HARD_TEXT)
            status = abort_with_core_limit_lifted(proc)
    finally:
        finish(proc)
    assert_aborted_without_core(status, cwd)


@pytest.mark.usefixtures("cores_are_written")
def test_running_daemon_with_values_dumps_no_core(
    dev_server: DevServer, workspace: Workspace, tmp_path: Path
) -> None:
    """The daemon, READY with every value in memory, has core limit 0 and dumps no core."""
    _create(dev_server, "tok", CANARY, "TOK")
    env = _config(workspace)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    notify = NotifySocket()
    stderr = tmp_path / "daemon.stderr"
    try:
        with stderr.open("wb") as err:
            proc = popen(
                [PY, "-m", "secret_agent", "run"],
                env={**env, "NOTIFY_SOCKET": notify.path},
                cwd=cwd,
                stdout=err,
                stderr=err,
            )
        try:
            notify.wait_for("READY=1", timeout=WAIT)
            assert core_limit(proc.pid) == ("0", HARD_TEXT)
            status = abort_with_core_limit_lifted(proc)
        finally:
            finish(proc)
    finally:
        notify.close()
    assert_aborted_without_core(status, cwd)
    assert_no_leak([CANARY], stderr.read_text())


@pytest.mark.usefixtures("cores_are_written")
def test_watch_parent_with_values_dumps_no_core(
    dev_server: DevServer, workspace: Workspace, tmp_path: Path
) -> None:
    """exec --watch, its child running with the values, has core limit 0 and dumps no core."""
    _create(dev_server, "tok", CANARY, "TOK")
    env = _config(workspace)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # The child lives until its stdin closes, so it never outlives the test.
    prog = "import sys; print('ready', flush=True); sys.stdin.read()"
    proc = popen(
        [PY, "-m", "secret_agent", "exec", "--watch", "--", PY, "-c", prog],
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        assert core_limit(proc.pid) == ("0", HARD_TEXT)
        status = abort_with_core_limit_lifted(proc)
    finally:
        finish(proc)  # closing its stdin ends the orphaned child too
    assert_aborted_without_core(status, cwd)


@pytest.mark.usefixtures("cores_are_written")
def test_dev_server_dumps_no_core(tmp_path: Path) -> None:
    """`secret-agent dev-server`, which holds every value and token, dumps no core."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = popen(
        [PY, "-u", "-m", "secret_agent", "dev-server", "--port", "0"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"secret-agent dev-server listening on ")
        assert core_limit(proc.pid) == ("0", HARD_TEXT)
        status = abort_with_core_limit_lifted(proc)
    finally:
        finish(proc)
    assert_aborted_without_core(status, cwd)


@pytest.mark.parametrize("watch", [False, True], ids=["exec", "exec-watch"])
def test_command_inherits_core_limit_0_and_may_raise_it(
    dev_server: DevServer, workspace: Workspace, watch: bool
) -> None:
    """The command exec runs starts with soft core limit 0, the hard limit kept, and can
    raise its soft limit again."""
    if HARD == 0:
        pytest.skip("the hard RLIMIT_CORE is 0 here: nothing to keep or raise")
    _create(dev_server, "tok", CANARY, "TOK")
    prog = textwrap.dedent(f"""
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
        raised = resource.getrlimit(resource.RLIMIT_CORE)[0] == {HARD}
        print("soft", soft, "hard-kept", hard == {HARD}, "raised", raised)
    """)
    flags = ["--watch"] if watch else []
    proc = popen(
        [PY, "-m", "secret_agent", "exec", *flags, "--", PY, "-c", prog],
        env=_config(workspace),
        cwd=workspace.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["soft", "0", "hard-kept", "True", "raised", "True"]
    assert_no_leak([CANARY], out.decode(), err.decode())


def test_status_drops_the_core_limit_too(workspace: Workspace) -> None:
    """status reads the token as well (the config does): its soft core limit is 0 too."""
    # status exits at once, so it records its own limits: a sitecustomize writes
    # /proc/self/limits out when the interpreter exits.
    probe = workspace.home / "limits"
    site = workspace.home / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import atexit, pathlib\n"
        f"atexit.register(lambda: pathlib.Path({str(probe)!r}).write_text("
        "pathlib.Path('/proc/self/limits').read_text()))\n"
    )
    proc = popen(
        [PY, "-m", "secret_agent", "status"],
        env={**_config(workspace), "PYTHONPATH": str(site)},
        cwd=workspace.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _out, err = proc.communicate(timeout=60)
    assert probe.exists(), err.decode()
    line = next(x for x in probe.read_text().splitlines() if x.startswith("Max core file size"))
    assert line.split()[4:6] == ["0", HARD_TEXT], line
