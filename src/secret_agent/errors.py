"""Every exception secret-agent raises, in one tree.

Exceptions factored out so any module can raise them without import loops.
Bases are cut by what a caller can do about the error::

    SecretAgentError
    ├── ConfigError                  bad config file, flag or environment value (key, file)
    ├── CredentialsError             no session token and no agent token
    ├── CoderError                   talking to Coder failed (retryable says if waiting helps)
    │   ├── CoderUnreachableError    connect, DNS, TLS, timeout
    │   ├── CoderResponseError       not JSON, HTML proxy page, wrong types, too large
    │   │   └── CoderRedirectError*  a 3xx, never followed: names the host it points to
    │   ├── AgentRPCError*           the workspace agent's RPC failed
    │   │   ├── AgentProtocolError*  yamux, drpc or API-version trouble
    │   │   ├── ManifestError*       the Manifest protobuf cannot be decoded
    │   │   └── AgentRPCStatusError* a drpc Error packet (code, the server's text)
    │   └── CoderAPIError            Coder answered with an error body (status, message, ...)
    │       ├── UnauthorizedError    401
    │       │   └── AgentTokenRejectedError*  401/403 at the agent RPC: the agent token
    │       ├── ForbiddenError       403
    │       ├── NotFoundError        404
    │       ├── ConflictError        409
    │       ├── RateLimitedError     429 (retry_after)
    │       └── ServerError          5xx (retry_after)
    ├── ValueSourceError             no way to get values for a secret
    ├── SecretRefusedError           one secret cannot be applied; the others still are
    │   ├── PathRefusedError         file_path outside allowed_roots, or malformed
    │   ├── SymlinkRefusedError      a symlink at the target or an escaping symlinked parent
    │   ├── EnvNameRefusedError      invalid or reserved env_name
    │   ├── UnrepresentableValueError  a value the env-file format cannot carry, or NUL
    │   └── DuplicateTargetError     two secrets claim the same file or variable
    ├── UnsafePathError              a path escapes the roots or crosses a symlink (path)
    ├── ApplyError                   I/O failure writing or removing (path, errno)
    ├── LedgerError                  unreadable or corrupt ledger
    └── LaunchError                  `exec` cannot start the command (exit_code 126/127)
        ├── StaleStateError          fresh values were required and none are available
        └── ExecTooLargeError        argv and environment exceed the kernel's limit (E2BIG)

    Stopping                         not an error: a pass thread's signal that the daemon
                                     is stopping (raised by `gate.Gate`)

The types marked * are defined in `coder/errors.py`, beside the codecs and clients that
raise them (the dev server shares them too); they are part of this one tree, and this
picture is its one map. They stay there because they are the wire layer's vocabulary,
and this module, which every command imports, stays short.

Constructors take names, paths and fields, never values, so a message cannot contain
one. Messages end without a period so callers can prefix or suffix context.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from secret_agent import exit_codes


class SecretAgentError(Exception):
    """Base of every error secret-agent raises on purpose."""


class ConfigError(SecretAgentError):
    """A config file, flag or environment variable holds something unusable."""

    def __init__(self, message: str, *, key: str | None = None, file: str | None = None) -> None:
        self.key = key
        self.file = file
        where = ""
        if key and file:
            where = f"{file}: {key}: "
        elif key:
            where = f"{key}: "
        elif file:
            where = f"{file}: "
        super().__init__(f"{where}{message}")


class CredentialsError(SecretAgentError):
    """Neither a Coder session token nor an agent token could be found."""


class CoderError(SecretAgentError):
    """Talking to Coder failed. `retryable` says whether waiting and retrying can help."""

    retryable: bool = True


class CoderUnreachableError(CoderError):
    """No answer from Coder: connection refused, DNS, TLS or a timeout."""


class CoderResponseError(CoderError):
    """Coder (or something in front of it) answered with a body we cannot use."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Validation:
    """One entry of Coder's `validations` list: which field and what is wrong with it."""

    field: str
    detail: str


class CoderAPIError(CoderError):
    """Coder answered with an error status and (usually) its `{message, detail}` body."""

    retryable = False

    def __init__(
        self,
        *,
        status: int,
        message: str,
        detail: str = "",
        validations: Sequence[Validation] = (),
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.detail = detail
        self.validations = tuple(validations)
        self.retry_after = retry_after
        text = f"HTTP {status}: {message}"
        if detail:
            text += f" ({detail})"
        for v in self.validations:
            text += f"; {v.field}: {v.detail}"
        super().__init__(text)


class UnauthorizedError(CoderAPIError):
    """401: the session token is missing, invalid or expired."""

    def __str__(self) -> str:
        return (
            super().__str__() + " - the Coder session token is missing, invalid or expired;"
            " run `coder login` or set CODER_SESSION_TOKEN"
        )


class ForbiddenError(CoderAPIError):
    """403: the token is valid but may not do this."""


class NotFoundError(CoderAPIError):
    """404: no such secret or user (or no access to it)."""


class ConflictError(CoderAPIError):
    """409: a name, env_name or file_path is already in use."""


class RateLimitedError(CoderAPIError):
    """429: too many requests; `retry_after` says how long Coder wants us to wait."""

    retryable = True


class ServerError(CoderAPIError):
    """5xx: Coder or a proxy failed; retrying later may help."""

    retryable = True


class ValueSourceError(SecretAgentError):
    """No configured source can provide the value of a secret."""


class SecretRefusedError(SecretAgentError):
    """One secret cannot be applied; it is reported and the rest of the pass goes on."""

    def __init__(self, message: str, *, secret: str) -> None:
        self.secret = secret
        self.reason = message
        super().__init__(f"secret {secret!r}: {message}")


class PathRefusedError(SecretRefusedError):
    """The file_path is malformed or lies outside `sync.allowed_roots`."""


class SymlinkRefusedError(SecretRefusedError):
    """A symlink sits at the target, or a symlinked parent leads outside the roots."""


class EnvNameRefusedError(SecretRefusedError):
    """The env_name is not a POSIX name, or is reserved by Coder and not allowed."""


class UnrepresentableValueError(SecretRefusedError):
    """The env-file format cannot carry this value exactly (or it holds NUL)."""


class DuplicateTargetError(SecretRefusedError):
    """Another secret already claims the same file or variable."""


class UnsafePathError(SecretAgentError):
    """A path lies outside the allowed roots, or a symlink sits where none may be, or
    `state_dir` is not this user's alone (owner, mode, a planted symlink).

    Raised by `paths` and `files`, which know paths but not secrets; `apply` turns it
    into a `PathRefusedError` or `SymlinkRefusedError` naming the secret. One that
    reaches the command line is about local state (exit 6).
    """

    def __init__(self, message: str, *, path: str, symlink: bool = False) -> None:
        self.path = path
        self.reason = message
        self.symlink = symlink
        super().__init__(f"{path}: {message}")


class ApplyError(SecretAgentError):
    """Writing or removing a file failed at the OS level."""

    def __init__(self, message: str, *, path: str, errno: int | None = None) -> None:
        self.path = path
        self.errno = errno
        super().__init__(f"{path}: {message}")


@contextlib.contextmanager
def os_errors_as_apply_errors(path: str, action: str) -> Iterator[None]:
    """Translate `OSError` into `ApplyError` ("ACTION: reason", with `errno`): the one
    boundary of every module that writes or removes files (`files`, `originals`)."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ApplyError(f"{action}: {reason}", path=path, errno=exc.errno) from exc


class LedgerError(SecretAgentError):
    """The ledger in `sync.state_dir` is unreadable or corrupt."""


class LaunchError(SecretAgentError):
    """`exec` cannot run the command; `exit_code` follows the shell (127 missing, 126 not
    executable)."""

    def __init__(self, message: str, *, exit_code: int = exit_codes.CANNOT_EXECUTE) -> None:
        self.exit_code = exit_code
        super().__init__(message)

    @classmethod
    def of(cls, command: str, exc: OSError) -> LaunchError:
        """`command` could not be started: the shell's words and code for why."""
        if isinstance(exc, FileNotFoundError):
            reason = "command not found"
        elif isinstance(exc, PermissionError):
            reason = "permission denied"
        else:
            reason = f"cannot execute: {exc.strerror}"
        return cls(f"{command}: {reason}", exit_code=exit_codes.launch_failure(exc))


class StaleStateError(LaunchError):
    """`--require-fresh` was given and neither Coder nor a fresh daemon answered."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=exit_codes.UNAVAILABLE)


class ExecTooLargeError(LaunchError, OSError):
    """argv and the environment are more than execve accepts (exit 126, as a shell's).

    Also an `OSError` (E2BIG, the message as `strerror`), so that whoever handles a
    child that cannot be spawned handles this one too (`exec --watch`'s restart does).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=exit_codes.CANNOT_EXECUTE)
        self.message = message
        self.errno = errno.E2BIG
        self.strerror = message

    def __str__(self) -> str:  # the message alone, as every LaunchError's (no "[Errno 7]")
        return self.message


class Stopping(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the gate inside a pass thread once the daemon is stopping; outside the
    `SecretAgentError` tree so no handler of errors swallows it."""
