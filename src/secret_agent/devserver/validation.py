"""Coder's rules for user secrets: field checks, the PATCH merge, caps and uniqueness.

The dev server must refuse exactly what Coder refuses, with the same field names and
detail texts, so a client tested against it meets no surprise against Coder. The rules
are transcribed from `codersdk/usersecretvalidation.go`, `coderd/usersecrets.go` and
the `enforce_user_secrets_per_user_limits` trigger (see
`docs/user-secrets-api.md` §2). Lengths are counted in UTF-8 bytes,
as Go's `len(string)` does.

This module does no I/O and holds no state. It looks at a value only for its size and
for NUL, and no message it builds contains one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from secret_agent.devserver.records import (
    NO_FIELDS_MESSAGE,
    StoredSecret,
    StoreError,
    not_found,
    refused,
)
from secret_agent.errors import Validation
from secret_agent.redact import Secret

MAX_VALUE_BYTES: Final = 24 * 1024
MAX_ENV_NAME_BYTES: Final = 256
MAX_FILE_PATH_BYTES: Final = 4096
MAX_SECRETS_PER_USER: Final = 50
MAX_TOTAL_VALUE_BYTES: Final = 200 * 1024
MAX_ENV_VALUE_BYTES: Final = 24 * 1024

# Coder's username rule (`codersdk.NameValid`): alphanumerics in dash-separated runs.
_USERNAME: Final = re.compile(r"[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*")
MAX_USERNAME_LENGTH: Final = 32

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


def canonical_uuid(text: str) -> str | None:
    """`text` as a lower-case hyphenated UUID, or None when it is not a UUID."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def username_problem(username: str) -> str | None:
    """Why Coder would refuse `username`, or None; `me` is refused as it names the caller."""
    if len(username) > MAX_USERNAME_LENGTH or not _USERNAME.fullmatch(username):
        return f"use 1-{MAX_USERNAME_LENGTH} letters, digits and single dashes, not at either end"
    if username.lower() == "me":
        return '"me" is reserved: it means the caller in every URL'
    return None


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
    return _reserved_problem(env_name.upper())


def _reserved_problem(upper: str) -> str | None:
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


def patched(
    old: StoredSecret | None,
    *,
    value: str | None,
    description: str | None,
    env_name: str | None,
    file_path: str | None,
    enabled: bool | None,
) -> StoredSecret:
    """`old` with the PATCH fields applied (None = unchanged, "" = clear).

    Refusals come in coderd's order: no field at all, a bad field, no such secret
    (`old` is None), then an enabled secret left without a target. `updated_at` is
    the caller's to set; caps and uniqueness are checked by the caller too.

    Raises:
        StoreError: 400 or 404 in Coder's words.
    """
    if all(f is None for f in (value, description, env_name, file_path, enabled)):
        raise StoreError(status=400, message=NO_FIELDS_MESSAGE)
    problems = validate_update(value=value, env_name=env_name, file_path=file_path)
    if problems:
        raise refused(400, problems)
    if old is None:
        raise not_found()
    new = replace(
        old,
        value=old.value if value is None else Secret(value),
        description=old.description if description is None else description,
        env_name=old.env_name if env_name is None else env_name,
        file_path=old.file_path if file_path is None else file_path,
        enabled=old.enabled if enabled is None else enabled,
    )
    if new.enabled and not new.env_name and not new.file_path:
        raise refused(400, [Validation("env_name", TARGET_REQUIRED_DETAIL)])
    return new


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-user caps; Coder's by default. Benchmarks raise them to test 1,000 secrets."""

    max_secrets: int = MAX_SECRETS_PER_USER
    max_total_value_bytes: int = MAX_TOTAL_VALUE_BYTES
    max_env_value_bytes: int = MAX_ENV_VALUE_BYTES


CODER_LIMITS: Final = Limits()


def check_limits(
    others: Sequence[StoredSecret], new: StoredSecret, limits: Limits = CODER_LIMITS
) -> None:
    """Refuse `new` when, with the user's `others`, it would exceed a per-user cap.

    Checked in the trigger's order: count, total value bytes, env-injected value
    bytes. A secret counts as env-injected when it has an env_name, enabled or not,
    as in the trigger.

    Raises:
        StoreError: 400 with Coder's message and detail for the first cap exceeded.
    """
    everyone = [*others, new]
    sizes = [(utf8_len(s.value.reveal()), bool(s.env_name)) for s in everyone]
    total = sum(size for size, _ in sizes)
    env = sum(size for size, has_env_name in sizes if has_env_name)
    if len(everyone) > limits.max_secrets:
        raise StoreError(
            status=400,
            message="User secrets limit reached.",
            detail=f"Each user can have at most {limits.max_secrets} secrets.",
        )
    if total > limits.max_total_value_bytes:
        raise StoreError(
            status=400,
            message="User secrets value-bytes limit reached.",
            detail="Stored bytes of your secret values exceed the per-user budget "
            f"({limits.max_total_value_bytes} bytes after encryption, if applicable). "
            "Reduce the size or number of your secrets.",
        )
    if env > limits.max_env_value_bytes:
        raise StoreError(
            status=400,
            message="Environment-injected user secrets bytes limit reached.",
            detail="Stored bytes of env-injected secret values exceed the per-user budget "
            f"({limits.max_env_value_bytes} bytes after encryption, if applicable). "
            "Reduce the size or number of env-injected secrets. If your deployment "
            "permits file path delivery, clear env_name and use file_path instead.",
        )


def check_unique(others: Sequence[StoredSecret], new: StoredSecret) -> None:
    """Refuse `new` when one of the user's `others` has its name, env_name or file_path.

    Empty env_name and file_path never collide. Only the first conflict is reported,
    as Postgres reports the first unique index violated, in creation order.

    Raises:
        StoreError: 409 with Coder's validation for the conflicting field.
    """
    if any(s.name == new.name for s in others):
        raise refused(409, [Validation("name", "name already in use")])
    if new.env_name and any(s.env_name == new.env_name for s in others):
        raise refused(409, [Validation("env_name", "environment variable already in use")])
    if new.file_path and any(s.file_path == new.file_path for s in others):
        raise refused(409, [Validation("file_path", "file path already in use")])
