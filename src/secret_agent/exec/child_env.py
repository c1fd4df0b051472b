"""A child's environment: the inherited variables overlaid with the secret ones, and
whether the kernel will take it.

Pure. Secret variables win over inherited ones, as in Coder's own precedence (user
secrets override template env). Each name must pass the same rules as the env file
(POSIX name, not reserved by Coder unless allowed); a value with NUL, or one that is not
UTF-8 text, cannot go through execve, nor can a ``NAME=value`` longer than
`MAX_ARG_STRLEN` bytes (the env file's rule, for the same reason). A refused variable is
left out and reported; it never stops the others.

What execve accepts in all (`arg_max`, the one function here that asks the system;
`exec_size`) is checked by `check_exec_size` just before the exec (`fast_path`,
`supervisor`): too much is a `LaunchError` that names the largest variables and their
sizes, never a value, instead of the kernel's bare "Argument list too long" (tests
check the counting against the running kernel, to the byte).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from secret_agent.envname import validate_env_name
from secret_agent.errors import (
    DuplicateTargetError,
    ExecTooLargeError,
    SecretRefusedError,
    UnrepresentableValueError,
)
from secret_agent.model import DesiredState

# Linux MAX_ARG_STRLEN is 32 pages (131072 bytes) per argv or envp string, NUL included:
# a longer one fails the whole execve with E2BIG. `envfile` refuses the same length.
MAX_ARG_STRLEN: Final = 131072 - 1
# The kernel takes at most a quarter of the stack limit for argv and envp, never less
# than 32 pages and (since Linux 4.13) never more than 3/4 of _STK_LIM (8 MiB); glibc's
# sysconf(_SC_ARG_MAX) reports the quarter without that cap.
_MIN_ARG_MAX: Final = 131072
_LINUX_ARG_MAX_CAP: Final = 6 * 1024 * 1024
_POINTER_BYTES: Final = 8 if sys.maxsize > 2**32 else 4
LARGEST_SHOWN: Final = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildEnv:
    """The environment to exec with, which names came from secrets, and the refusals."""

    env: dict[str, str]
    secret_names: tuple[str, ...]
    refused: tuple[SecretRefusedError, ...]

    def __repr__(self) -> str:  # the env holds values: never print it
        return f"ChildEnv(variables={len(self.env)}, secret_names={self.secret_names!r})"


def child_env(
    inherited: Mapping[str, str],
    desired: DesiredState,
    *,
    allow_reserved: Collection[str] = (),
) -> ChildEnv:
    """`inherited` plus every deliverable secret variable (secrets win)."""
    env = dict(inherited)
    taken: set[str] = set()
    refused: list[SecretRefusedError] = []
    for secret in desired.secrets:
        name = secret.env_name
        if not name:
            continue
        try:
            validate_env_name(name, secret=secret.name, allow_reserved=allow_reserved)
            if name in taken:
                raise DuplicateTargetError(
                    f"variable {name} is already set by another secret", secret=secret.name
                )
            _check_value(name, secret.value.reveal(), secret=secret.name)
        except SecretRefusedError as exc:
            refused.append(exc)
            continue
        taken.add(name)
        env[name] = secret.value.reveal()
    return ChildEnv(env=env, secret_names=tuple(sorted(taken)), refused=tuple(refused))


def _check_value(name: str, value: str, *, secret: str) -> None:
    """Raises: UnrepresentableValueError: execve cannot pass `name=value`."""

    def refuse(reason: str) -> UnrepresentableValueError:
        return UnrepresentableValueError(f"variable {name}: {reason}", secret=secret)

    if "\0" in value:
        raise refuse("the value contains NUL, which execve cannot pass")
    try:
        size = len(name) + 1 + len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise refuse("the value is not valid UTF-8 text (it holds a lone surrogate)") from None
    if size > MAX_ARG_STRLEN:
        raise refuse(
            f"{name}=... is {size} bytes, more than the {MAX_ARG_STRLEN} Linux lets one"
            " environment variable be (MAX_ARG_STRLEN); left out of the environment"
        )


def arg_max() -> int:
    """How many bytes of argv and envp strings and pointers execve accepts here."""
    try:
        limit = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        limit = -1
    limit = max(limit, _MIN_ARG_MAX)
    if sys.platform == "linux":
        limit = min(limit, _LINUX_ARG_MAX_CAP)
    return limit


def exec_size(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """The bytes execve needs for `argv` and `env`, counted as Linux counts them.

    Each string with its NUL (``NAME=value`` for a variable), the program's path once
    more (the kernel copies it first; here argv[0], so a PATH search's directory is not
    counted), and one pointer slot for each argv and envp entry.
    """
    strings = sum(_nbytes(arg) + 1 for arg in argv)
    strings += sum(_variable_bytes(k, v) + 1 for k, v in env.items())
    path = _nbytes(argv[0]) + 1 if argv else 0
    return strings + path + (max(len(argv), 1) + len(env)) * _POINTER_BYTES


def check_exec_size(argv: Sequence[str], env: Mapping[str, str], *, limit: int) -> None:
    """Raises: ExecTooLargeError: `exec_size` is over `limit` (see `too_large`)."""
    if exec_size(argv, env) > limit:
        raise too_large(argv, env, limit=limit)


def too_large(argv: Sequence[str], env: Mapping[str, str], *, limit: int) -> ExecTooLargeError:
    """The error for argv and env that execve refuses (E2BIG): sizes and names only."""
    program = argv[0] if argv else "the command"
    need = exec_size(argv, env)
    sizes = sorted(((_variable_bytes(k, v), k) for k, v in env.items()), reverse=True)
    largest = ", ".join(f"{name} ({size} bytes)" for size, name in sizes[:LARGEST_SHOWN])
    arg_bytes = sum(_nbytes(arg) + 1 for arg in argv)
    env_bytes = sum(size + 1 for size, _ in sizes)
    verdict = (
        f"need {need} bytes, more than the {limit}"
        if need > limit
        else f"need about {need} bytes, which the kernel refused as more than the {limit}"
    )
    return ExecTooLargeError(
        f"{program}: cannot execute: its arguments ({arg_bytes} bytes) and environment"
        f" ({len(env)} variables, {env_bytes} bytes) {verdict} that execve accepts"
        " (ARG_MAX: a quarter of the stack limit `ulimit -s`, at most 6 MiB);"
        f" largest variables: {largest or 'none'}"
    )


def _variable_bytes(name: str, value: str) -> int:
    return _nbytes(name) + 1 + _nbytes(value)


def _nbytes(text: str) -> int:
    """Bytes `text` takes in an execve (as os.fsencode gives it)."""
    try:
        return len(os.fsencode(text))
    except UnicodeEncodeError:  # execve cannot take it at all; count it generously
        return len(text.encode("utf-8", "surrogatepass"))
