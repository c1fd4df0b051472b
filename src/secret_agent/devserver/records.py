"""The dev server's records and its refusals in Coder's error shape.

`StoreError` carries what coderd puts in an error answer (status, message, detail,
validations), so the store can refuse in Coder's words and the app can render the
refusal unchanged. Messages name fields and users, never values.

This module imports nothing of the dev server and nothing from starlette.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from secret_agent.errors import SecretAgentError, Validation
from secret_agent.redact import Secret

NOT_FOUND_MESSAGE: Final = "Resource not found or you do not have access to this resource"
UNKNOWN_USER_MESSAGE: Final = '"user" must be an existing uuid or username.'
NO_FIELDS_MESSAGE: Final = "At least one field must be provided."
VALIDATION_MESSAGE: Final = "Validation failed."
TOKEN_HEADER: Final = "Coder-Session-Token"  # noqa: S105 - a header name
# The cookie's name, and the query parameter's.
TOKEN_COOKIE: Final = "coder_session_token"  # noqa: S105 - a cookie name


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A Coder user: its username (unique, case-insensitively) and UUID."""

    username: str
    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSecret:
    """One user secret with its value; the value prints as `[redacted]`."""

    id: str
    name: str
    value: Secret
    description: str
    env_name: str
    file_path: str
    enabled: bool
    created_at: str
    updated_at: str


class StoreError(SecretAgentError):
    """A refusal in Coder's error shape: HTTP status, message, detail, validations.

    Raised by the store for Coder's rules, and by the app for its own door checks
    (auth, unknown user), so every error answer goes through one path.
    """

    def __init__(
        self,
        *,
        status: int,
        message: str,
        detail: str = "",
        validations: Sequence[Validation] = (),
    ) -> None:
        self.status = status
        self.message = message
        self.detail = detail
        self.validations = tuple(validations)
        text = message
        if detail:
            text += f" {detail}"
        if self.validations:
            text += " (" + "; ".join(f"{v.field}: {v.detail}" for v in self.validations) + ")"
        super().__init__(text)


def not_found() -> StoreError:
    """Coder's deliberately vague 404."""
    return StoreError(status=404, message=NOT_FOUND_MESSAGE)


def unknown_user(query: str) -> StoreError:
    """Coder's 400 for a `{user}` that is neither a known UUID nor a known username."""
    # Go's %q: double-quoted, escapes like JSON's for the printable cases that matter.
    quoted = json.dumps(query, ensure_ascii=False)
    return StoreError(status=400, message=UNKNOWN_USER_MESSAGE, detail=f"queried user={quoted}")


def refused(status: int, validations: Sequence[Validation]) -> StoreError:
    """Coder's "Validation failed." answer listing what is wrong with which field."""
    return StoreError(status=status, message=VALIDATION_MESSAGE, validations=validations)
