"""Env names: the rules a secret's `env_name` must meet before the agent writes it.

A name is ``^[A-Za-z_][A-Za-z0-9_]*$``, at most 256 bytes, and not reserved by Coder
(`RESERVED_NAMES`, `RESERVED_PREFIXES`, compared upper-cased) unless allowed by an exact
name or a ``PREFIX*`` pattern in ``allow_reserved``. On top of that, the posix env file
refuses the names bash owns (`SHELL_SPECIAL_NAMES`, `validate_shell_name`): the
read-only ones (``UID``, ``EUID``, ``PPID``, ``SHELLOPTS``, ``BASHOPTS``,
``BASH_VERSINFO``; assigning one is an error that makes ``bash --posix``, which is
``/bin/sh`` on some distributions, stop reading the file) and the dynamic ones whose
value bash replaces (``RANDOM``, ``SECONDS``, ``LINENO``, ``OPTIND``, ``SHLVL``, ``_``,
...). That list was measured on bash 5.2 and dash 0.5.12. zsh has specials of its own
(``status``, ``ARGC``, lower-case ``path``...); they are not refused (not measured here).

It exists apart from `envfile` because these rules are about names alone: they hold for
every format, and what may be written for a value is `envfile`'s. This module is pure
and never sees a value; a refusal is an `EnvNameRefusedError` naming the secret, the
variable and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Final

from secret_agent.errors import EnvNameRefusedError

__all__ = [
    "MAX_NAME_BYTES",
    "RESERVED_NAMES",
    "RESERVED_PREFIXES",
    "SHELL_SPECIAL_NAMES",
    "validate_env_name",
    "validate_shell_name",
]


# Coder's own list (codersdk UserSecretEnvNameValid), compared upper-cased. "CODER" is
# reserved as a whole name and "CODER_" as a prefix.
RESERVED_NAMES: Final[frozenset[str]] = frozenset(
    {
        "PATH",
        "HOME",
        "SHELL",
        "USER",
        "LOGNAME",
        "PWD",
        "OLDPWD",
        "LANG",
        "TERM",
        "IFS",
        "CDPATH",
        "ENV",
        "BASH_ENV",
        "TMPDIR",
        "TMP",
        "TEMP",
        "HOSTNAME",
        "SSH_AUTH_SOCK",
        "SSH_CLIENT",
        "SSH_CONNECTION",
        "SSH_TTY",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "VSCODE_PROXY_URI",
        "CS_DISABLE_GETTING_STARTED_OVERRIDE",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "CODER",
    }
)
RESERVED_PREFIXES: Final[tuple[str, ...]] = ("CODER_", "GIT_", "LC_", "LD_", "DYLD_")

# Variables bash (5.2) or dash owns: read-only ones (assigning fails, and bash --posix
# stops reading the file) and dynamic ones whose value the shell replaces. Measured by
# sourcing `NAME='canary'` under `env -i` and reading `env -0`; the unit tests re-check
# every entry. Case-sensitive, as shells are. Refused for the posix format only.
SHELL_SPECIAL_NAMES: Final[frozenset[str]] = frozenset(
    {
        # read-only
        "BASHOPTS",
        "BASH_VERSINFO",
        "EUID",
        "PPID",
        "SHELLOPTS",
        "UID",
        # dynamic: the shell computes, resets or ignores the value
        "BASHPID",
        "BASH_ALIASES",
        "BASH_ARGC",
        "BASH_ARGV",
        "BASH_ARGV0",
        "BASH_CMDS",
        "BASH_LINENO",
        "BASH_SOURCE",
        "BASH_SUBSHELL",
        "COMP_WORDBREAKS",
        "DIRSTACK",
        "EPOCHREALTIME",
        "EPOCHSECONDS",
        "FUNCNAME",
        "GROUPS",
        "HISTCMD",
        "LINENO",
        "OPTIND",
        "PIPESTATUS",
        "RANDOM",
        "SECONDS",
        "SHLVL",
        "SRANDOM",
        "_",
    }
)


MAX_NAME_BYTES: Final = 256  # Coder's MaxUserSecretEnvNameLength

_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_env_name(name: str, *, secret: str, allow_reserved: Collection[str] = ()) -> None:
    """Check `name` against the POSIX name rule and Coder's reserved names and prefixes.

    Args:
        name: the env_name.
        secret: the secret's name, for the error.
        allow_reserved: exact names (``"GIT_AUTHOR_NAME"``) or patterns ending in ``*``
            (``"GIT_*"``) that lift the reserved rule; compared upper-cased, like the rule.

    Raises:
        EnvNameRefusedError: empty, longer than 256 bytes, not matching
            ``^[A-Za-z_][A-Za-z0-9_]*$``, or reserved and not allowed. The message names
            the secret, the variable and the rule.
        TypeError: `allow_reserved` is a single string rather than a collection of them.
    """
    if isinstance(allow_reserved, str):
        raise TypeError("allow_reserved must be a collection of names, not a string")
    if not name:
        raise EnvNameRefusedError("env_name is empty", secret=secret)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise EnvNameRefusedError(f"env_name is longer than {MAX_NAME_BYTES} bytes", secret=secret)
    if not _NAME_RE.fullmatch(name):
        raise EnvNameRefusedError(
            f"env_name {name!r} is not a valid variable name:"
            " it must match ^[A-Za-z_][A-Za-z0-9_]*$",
            secret=secret,
        )
    rule = _reserved_rule(name.upper())
    if rule is not None and not _is_allowed(name.upper(), allow_reserved):
        raise EnvNameRefusedError(
            f"env_name {name!r} is reserved by Coder ({rule}) and not explicitly allowed",
            secret=secret,
        )


def validate_shell_name(name: str, *, secret: str) -> None:
    """Check that sourcing a posix env file can set `name` (see `SHELL_SPECIAL_NAMES`).

    Raises:
        EnvNameRefusedError: `name` is one bash makes read-only or sets itself.
    """
    if name in SHELL_SPECIAL_NAMES:
        raise EnvNameRefusedError(
            f"env_name {name!r} is a special variable in bash (read-only or"
            " set by the shell itself), so sourcing the posix env file cannot set it",
            secret=secret,
        )


def _reserved_rule(upper: str) -> str | None:
    """Which of Coder's reserved rules `upper` falls under, described; None if none."""
    if upper in RESERVED_NAMES:
        return f"reserved name {upper}"
    for prefix in RESERVED_PREFIXES:
        if upper.startswith(prefix):
            return f"names starting with {prefix}"
    return None


def _is_allowed(upper: str, allow_reserved: Iterable[str]) -> bool:
    for pattern in allow_reserved:
        wanted = pattern.upper()
        if wanted.endswith("*"):
            if upper.startswith(wanted[:-1]):
                return True
        elif upper == wanted:
            return True
    return False
