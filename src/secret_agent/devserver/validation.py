"""Coder's rules for user secrets, as pure functions over plain fields.

The dev server must refuse exactly what Coder refuses, with the same field names and
detail texts, so a client tested against it meets no surprise against Coder. The rules
are transcribed from `codersdk/usersecretvalidation.go`, `coderd/usersecrets.go` and
the `enforce_user_secrets_per_user_limits` trigger (see
`reference/coder-user-secrets-internals.md` §2). Lengths are counted in UTF-8 bytes,
as Go's `len(string)` does.

This module does no I/O and holds no state; it never sees more of a value than its
bytes and whether it contains NUL, so nothing here can print one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from secret_agent.errors import Validation

MAX_VALUE_BYTES: Final = 24 * 1024
MAX_ENV_NAME_BYTES: Final = 256
MAX_FILE_PATH_BYTES: Final = 4096
MAX_SECRETS_PER_USER: Final = 50
MAX_TOTAL_VALUE_BYTES: Final = 200 * 1024
MAX_ENV_VALUE_BYTES: Final = 24 * 1024

# `fullmatch`, never `match` with `$`: Python's `$` also matches before a trailing
# newline, which would let "FOO\n" through where Go's regexp refuses it.
_ENV_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

RESERVED_ENV_NAMES: Final = frozenset(
    {
        "PATH", "HOME", "SHELL", "USER", "LOGNAME", "PWD", "OLDPWD",
        "LANG", "TERM", "IFS", "CDPATH", "ENV", "BASH_ENV", "TMPDIR", "TMP", "TEMP",
        "HOSTNAME", "SSH_AUTH_SOCK", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY",
        "EDITOR", "VISUAL", "PAGER", "VSCODE_PROXY_URI",
        "CS_DISABLE_GETTING_STARTED_OVERRIDE",
        "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
    }
)  # fmt: skip
RESERVED_ENV_PREFIXES: Final = ("GIT_", "LC_", "LD_", "DYLD_")

# Go's `strings.TrimSpace` trims `unicode.IsSpace`, which is narrower than
# `str.isspace` (that one also counts the \x1c-\x1f separators as space).
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# Coder's exact constant was not in the sources read; this mirrors the wording of its
# sibling `WorkspaceSecretInjectionTargetRequiredDetail`.
TARGET_REQUIRED_DETAIL: Final = (
    "An enabled secret must have at least one of env_name or file_path set."
)


def utf8_len(text: str) -> int:
    """Bytes `text` takes in UTF-8, as Go's `len` counts a string."""
    return len(text.encode("utf-8", "surrogatepass"))


def name_problem(name: str) -> str | None:
    """Why Coder refuses `name` as a secret name, or None when it is fine."""
    trimmed = name.strip(_GO_SPACE)
    if not trimmed:
        return "Name is required."
    if trimmed != name:
        return "Name must not have leading or trailing whitespace."
    if any(c in name for c in "/?#"):
        return "Name must not contain /, ?, or #."
    return None


def value_problem(value: str) -> str | None:
    """Why Coder refuses `value` (NUL or too long), or None; emptiness is the caller's."""
    if "\x00" in value:
        return "secret value must not contain null bytes"
    if utf8_len(value) > MAX_VALUE_BYTES:
        return f"secret value must not exceed {MAX_VALUE_BYTES} bytes"
    return None


def env_name_problem(env_name: str) -> str | None:
    """Why Coder refuses `env_name`, or None; "" means no env injection and is fine.

    Reserved names and prefixes are matched on the upper-cased name, so `path` and
    `ld_preload` are refused like `PATH` and `LD_PRELOAD`.
    """
    if not env_name:
        return None
    if utf8_len(env_name) > MAX_ENV_NAME_BYTES:
        return f"environment variable name must not exceed {MAX_ENV_NAME_BYTES} bytes"
    if not _ENV_NAME.fullmatch(env_name):
        return "must start with a letter or underscore, followed by letters, digits, or underscores"
    upper = env_name.upper()
    if upper in RESERVED_ENV_NAMES:
        return f"{upper} is a reserved environment variable name"
    if upper == "CODER" or upper.startswith("CODER_"):
        return "environment variable names starting with CODER_ are reserved for internal use"
    for prefix in RESERVED_ENV_PREFIXES:
        if upper.startswith(prefix):
            return f"environment variables starting with {prefix} are reserved"
    return None


def file_path_problem(file_path: str) -> str | None:
    """Why Coder refuses `file_path`, or None; "" means no file and is fine.

    Coder checks only the shape: `/etc/x` and `~/../x` are accepted (the agent's OS
    permissions decide), so they are accepted here too.
    """
    if not file_path:
        return None
    if not file_path.startswith(("~/", "/")):
        return "file path must start with ~/ or /"
    if "\x00" in file_path:
        return "file path must not contain null bytes"
    if utf8_len(file_path) > MAX_FILE_PATH_BYTES:
        return f"file path must not exceed {MAX_FILE_PATH_BYTES} bytes"
    return None


def _collect(pairs: Iterable[tuple[str, str | None]]) -> list[Validation]:
    return [Validation(field, problem) for field, problem in pairs if problem is not None]


def validate_create(
    *, name: str, value: str, env_name: str, file_path: str, enabled: bool
) -> list[Validation]:
    """Every problem Coder reports for a create request, in Coder's order."""
    validations = _collect(
        [
            ("name", name_problem(name)),
            ("value", "Value is required." if value == "" else value_problem(value)),
            ("env_name", env_name_problem(env_name)),
            ("file_path", file_path_problem(file_path)),
        ]
    )
    if enabled and not env_name and not file_path:
        validations.append(Validation("env_name", TARGET_REQUIRED_DETAIL))
    return validations


def validate_update(
    *, value: str | None, env_name: str | None, file_path: str | None
) -> list[Validation]:
    """Every problem Coder reports for the fields a PATCH sets (None = not sent).

    An empty value is not refused here: Coder checks only NUL and size on update.
    """
    return _collect(
        [
            ("value", None if value is None else value_problem(value)),
            ("env_name", None if env_name is None else env_name_problem(env_name)),
            ("file_path", None if file_path is None else file_path_problem(file_path)),
        ]
    )


def limit_problem(rows: Iterable[tuple[int, bool]]) -> tuple[str, str] | None:
    """The `(message, detail)` Coder answers when a user's secrets exceed a cap, or None.

    `rows` is every secret the user would have after the change, as
    `(value_bytes, has_env_name)`. Checked in the trigger's order: count, total value
    bytes, env-injected value bytes (a secret counts as env-injected when it has an
    env_name, enabled or not, as in the trigger).
    """
    count = total = env = 0
    for size, has_env_name in rows:
        count += 1
        total += size
        if has_env_name:
            env += size
    if count > MAX_SECRETS_PER_USER:
        return (
            "User secrets limit reached.",
            f"Each user can have at most {MAX_SECRETS_PER_USER} secrets.",
        )
    if total > MAX_TOTAL_VALUE_BYTES:
        return (
            "User secrets value-bytes limit reached.",
            "Stored bytes of your secret values exceed the per-user budget "
            f"({MAX_TOTAL_VALUE_BYTES} bytes after encryption, if applicable). "
            "Reduce the size or number of your secrets.",
        )
    if env > MAX_ENV_VALUE_BYTES:
        return (
            "Environment-injected user secrets bytes limit reached.",
            "Stored bytes of env-injected secret values exceed the per-user budget "
            f"({MAX_ENV_VALUE_BYTES} bytes after encryption, if applicable). "
            "Reduce the size or number of env-injected secrets. If your deployment "
            "permits file path delivery, clear env_name and use file_path instead.",
        )
    return None
