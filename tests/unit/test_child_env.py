"""`exec.child_env`: which secret variables a child gets, and what execve takes, against the kernel.

The size rules are checked against the running kernel itself: a child process execs
`/bin/true` with an environment sized to the predicted limit, and one byte more.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest

from secret_agent.errors import LaunchError, UnrepresentableValueError
from secret_agent.exec.child_env import (
    MAX_ARG_STRLEN,
    ExecTooLargeError,
    arg_max,
    check_exec_size,
    child_env,
    exec_size,
    too_large,
)
from secret_agent.model import DesiredSecret, DesiredState
from secret_agent.redact import Secret

CANARY = "canary-environ-77c2"
MIB = 1024 * 1024
TRUE = shutil.which("true") or "/bin/true"

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="Linux's execve limits")


def desired(*secrets: tuple[str, str, str]) -> DesiredState:
    """A desired state of (name, env_name, value) secrets."""
    return DesiredState(
        secrets=tuple(
            DesiredSecret(name=name, env_name=env_name, file_path="", value=Secret(value))
            for name, env_name, value in secrets
        )
    )


def test_variable_at_max_arg_strlen_is_kept_and_one_byte_more_is_refused() -> None:
    """NAME=value of 131071 bytes goes to the child; 131072 is refused, naming secret and name."""
    fits = "x" * (MAX_ARG_STRLEN - len("FITS="))
    over = CANARY + "y" * (MAX_ARG_STRLEN - len("OVER=") - len(CANARY) + 1)
    result = child_env(
        {"HOME": "/home/u"},
        desired(("fits", "FITS", fits), ("over", "OVER", over), ("small", "SMALL", "s")),
    )
    assert result.env["FITS"] == fits
    assert result.env["SMALL"] == "s"
    assert "OVER" not in result.env
    assert result.secret_names == ("FITS", "SMALL")
    [refusal] = result.refused
    assert isinstance(refusal, UnrepresentableValueError)
    assert refusal.secret == "over"
    assert "OVER" in str(refusal)
    assert "131072 bytes" in str(refusal)
    assert CANARY not in str(refusal)


def test_multibyte_value_is_measured_in_utf8_bytes() -> None:
    """The limit is in bytes: 43,690 three-byte characters are 131,070 bytes, too many with M=."""
    value = "€" * ((MAX_ARG_STRLEN - len("M=")) // 3 + 1)
    result = child_env({}, desired(("euro", "M", value)))
    assert "M" not in result.env
    assert [r.secret for r in result.refused] == ["euro"]


def test_value_with_lone_surrogate_is_refused_not_a_crash_at_execve() -> None:
    """A value execve cannot encode is left out with a reason, like the env file does."""
    result = child_env({}, desired(("bad", "BAD", "a\ud800b"), ("ok", "OK", "fine")))
    assert result.env == {"OK": "fine"}
    assert "UTF-8" in str(result.refused[0])


def test_exec_size_counts_strings_with_nul_the_path_and_pointer_slots() -> None:
    """/bin/true X with A=bc: 10+2 (argv) + 5 (env) + 10 (path) + 3 pointers."""
    pointer = 8 if sys.maxsize > 2**32 else 4
    assert exec_size(["/bin/true", "X"], {"A": "bc"}) == 10 + 2 + 5 + 10 + 3 * pointer


def test_too_large_names_the_largest_variables_and_no_value() -> None:
    """The error names up to five variables, largest first, with sizes, never a value."""
    env = {f"V{i}": CANARY + "z" * (1000 * i) for i in range(8)}
    exc = too_large(["prog", "arg"], env, limit=4096)
    text = str(exc)
    assert isinstance(exc, LaunchError)
    assert isinstance(exc, OSError)  # exec --watch's restart handles it as a failed spawn
    assert exc.errno == errno.E2BIG
    assert exc.exit_code == 126
    assert text.startswith("prog: cannot execute:")
    assert CANARY not in text
    expected = [f"V{i} ({len(f'V{i}=') + len(env[f'V{i}'])} bytes)" for i in (7, 6, 5, 4, 3)]
    positions = [text.index(name) for name in expected]
    assert positions == sorted(positions)
    assert "V2 (" not in text
    assert "4096" in text


def test_check_exec_size_passes_at_the_limit_and_refuses_above() -> None:
    """The check allows exactly `limit` bytes."""
    argv, env = ["prog"], {"A": "x" * 100}
    size = exec_size(argv, env)
    check_exec_size(argv, env, limit=size)
    with pytest.raises(ExecTooLargeError):
        check_exec_size(argv, env, limit=size - 1)


def _with_stack(soft: int) -> Callable[[], None]:
    def preexec() -> None:
        hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))

    return preexec


def _stack_settable(soft: int) -> bool:
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    return hard == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and soft <= hard)


@linux_only
@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        (8 * MIB, 2 * MIB),  # a quarter of the stack limit
        (256 * 1024, 128 * 1024),  # never under 32 pages
        (resource.RLIM_INFINITY, 6 * MIB),  # never over 3/4 of 8 MiB, whatever sysconf says
    ],
    ids=["8MiB-stack", "small-stack", "unlimited-stack"],
)
def test_arg_max_follows_the_stack_limit_as_the_kernel_does(stack: int, expected: int) -> None:
    """arg_max() in a process with that stack limit is the kernel's limit for it."""
    if not _stack_settable(stack):
        pytest.skip(f"the hard stack limit here does not allow a soft limit of {stack}")
    out = subprocess.run(
        [sys.executable, "-c", "from secret_agent.exec.child_env import arg_max; print(arg_max())"],
        preexec_fn=_with_stack(stack),
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) == expected


def _env_of_size(target: int, argv: list[str]) -> dict[str, str]:
    """An environment that makes exec_size(argv, env) exactly `target`."""
    env: dict[str, str] = {}
    i = 0
    while exec_size(argv, env) < target:
        name = f"F{i:03d}"
        room = target - exec_size(argv, env) - len(name) - 2 - (8 if sys.maxsize > 2**32 else 4)
        if room < 1:  # too little room for one more variable: grow the previous one
            last = f"F{i - 1:03d}"
            env[last] += "x" * (target - exec_size(argv, env))
            break
        env[name] = "x" * min(room, MAX_ARG_STRLEN - len(name) - 1)
        i += 1
    assert exec_size(argv, env) == target
    return env


@linux_only
@pytest.mark.parametrize(
    "stack", [8 * MIB, resource.RLIM_INFINITY], ids=["8MiB-stack", "unlimited-stack"]
)
def test_predicted_limit_is_the_kernels_to_the_byte(stack: int) -> None:
    """execve takes argv+env of exactly the predicted limit, and refuses one byte more."""
    if not _stack_settable(stack):
        pytest.skip(f"the hard stack limit here does not allow a soft limit of {stack}")
    limit = 6 * MIB if stack == resource.RLIM_INFINITY else stack // 4
    argv = [TRUE]
    at_limit = _env_of_size(limit, argv)
    subprocess.run(argv, env=at_limit, preexec_fn=_with_stack(stack), check=True)
    over = dict(at_limit)
    last = max(over)
    over[last] += "x"
    assert exec_size(argv, over) == limit + 1
    with pytest.raises(OSError) as caught:
        subprocess.run(argv, env=over, preexec_fn=_with_stack(stack), check=True)
    assert caught.value.errno == errno.E2BIG


@linux_only
def test_kernel_refuses_one_string_over_max_arg_strlen() -> None:
    """MAX_ARG_STRLEN is the kernel's: 131071 bytes of NAME=value run, 131072 fail."""
    subprocess.run([TRUE], env={"A": "x" * (MAX_ARG_STRLEN - 2)}, check=True)
    with pytest.raises(OSError) as caught:
        subprocess.run([TRUE], env={"A": "x" * (MAX_ARG_STRLEN - 1)}, check=True)
    assert caught.value.errno == errno.E2BIG


def test_arg_max_is_at_least_the_legacy_minimum() -> None:
    """Whatever sysconf says, 32 pages are always allowed."""
    assert arg_max() >= 128 * 1024
    assert os.sysconf("SC_ARG_MAX") > 0
