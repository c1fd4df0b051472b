"""A child's environment: the inherited variables overlaid with the secret ones.

Pure. Secret variables win over inherited ones, as in Coder's own precedence (user
secrets override template env). Each name must pass the same rules as the env file
(POSIX name, not reserved by Coder unless allowed); a value with NUL cannot go through
execve. A refused variable is left out and reported; it never stops the others.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from secret_agent.envname import validate_env_name
from secret_agent.errors import (
    DuplicateTargetError,
    SecretRefusedError,
    UnrepresentableValueError,
)
from secret_agent.model import DesiredState


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
            if "\0" in secret.value.reveal():
                raise UnrepresentableValueError(
                    f"variable {name}: the value contains NUL, which execve cannot pass",
                    secret=secret.name,
                )
        except SecretRefusedError as exc:
            refused.append(exc)
            continue
        taken.add(name)
        env[name] = secret.value.reveal()
    return ChildEnv(env=env, secret_names=tuple(sorted(taken)), refused=tuple(refused))
