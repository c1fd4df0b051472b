"""Every exit code secret-agent returns, and the one table that explains them.

`TABLE` rows are (code, a few words for `--help`, the meaning). README's "Exit codes"
table is its codes and meanings, row for row (tests/unit/test_exit_codes.py
fails when they disagree). Plain ints, no enum: exec's fast path imports this module.
Which exception becomes which code is `cli.EXIT_CODES`; a command's own results
(`run --once`, `check`, `status`, `exec`) use the names here.
"""

from __future__ import annotations

OK = 0
PARTIAL = 1  # run --once / check: some secrets refused or not applied; status: not synced
USAGE = 2
AUTH = 3
NOT_RUNNING = 3  # status: no daemon running (the LSB code for "not running")
UNAVAILABLE = 4  # also exec --require-fresh with nothing fresh to give
NO_VALUES = 5
STATE = 6
INTERNAL = 70
INTERRUPTED = 130  # SIGINT, as a shell reports it
CANNOT_EXECUTE = 126  # exec: the command is not executable, or argv + env exceed E2BIG
COMMAND_NOT_FOUND = 127

TABLE: tuple[tuple[int, str, str], ...] = (
    (OK, "ok", "everything applied (`check`: the plan is clean; `status`: running and synced)"),
    (
        PARTIAL,
        "some secrets not applied",
        "the pass ran, but some secrets were refused or failed to apply"
        " (`status`: not synced yet, or retrying)",
    ),
    (USAGE, "usage/config", "usage or configuration error"),
    (
        AUTH,
        "credentials (status: not running)",
        "credentials missing, rejected (401) or not allowed (403); `status`: no daemon running",
    ),
    (
        UNAVAILABLE,
        "Coder unavailable",
        "Coder unreachable or answering with errors (timeouts, 5xx, 429, bad bodies);"
        " `exec --require-fresh`: no fresh values",
    ),
    (NO_VALUES, "no value source", "no way to get secret values (`values.source`)"),
    (
        STATE,
        "local state",
        "local state unusable (corrupt ledger, `state_dir` not writable or not yours alone)",
    ),
    (INTERNAL, "internal error", "internal error (a bug; please report it)"),
    (
        CANNOT_EXECUTE,
        "exec: cannot execute",
        "`exec`: the command cannot be executed (as a shell says it)",
    ),
    (COMMAND_NOT_FOUND, "exec: not found", "`exec`: the command was not found"),
    (INTERRUPTED, "interrupted", "interrupted (Ctrl-C)"),
)


def launch_failure(exc: OSError) -> int:
    """The shell's code for a command that could not be started: 127 when it does not
    exist, 126 for every other reason (not executable, too large, ...)."""
    return COMMAND_NOT_FOUND if isinstance(exc, FileNotFoundError) else CANNOT_EXECUTE


def of_child(returncode: int) -> int:
    """A child's status as a shell reports it: its code, or 128+N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode
