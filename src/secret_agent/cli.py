"""The `secret-agent` command: argument parsing, exit codes, and error messages.

Each subcommand imports what it needs inside its handler, so `--help` and `--version`
cost no more than argparse. Exceptions become one line on stderr and an exit code
from one table (`EXIT_CODES`); a bug becomes 70 with its type, never a traceback that
could carry a value.

Exit codes: `exit_codes` (README's table is its `TABLE`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from secret_agent import exit_codes
from secret_agent.arguments import build_parser, exec_parser, load
from secret_agent.errors import (
    ApplyError,
    CoderError,
    ConfigError,
    CredentialsError,
    ForbiddenError,
    LaunchError,
    LedgerError,
    SecretAgentError,
    UnauthorizedError,
    UnsafePathError,
    ValueSourceError,
)

if TYPE_CHECKING:
    pass


# Order matters: the first matching class wins, so subclasses come before bases.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, exit_codes.USAGE),
    (CredentialsError, exit_codes.AUTH),
    (UnauthorizedError, exit_codes.AUTH),
    (ForbiddenError, exit_codes.AUTH),
    (CoderError, exit_codes.UNAVAILABLE),
    (ValueSourceError, exit_codes.NO_VALUES),
    (LedgerError, exit_codes.STATE),
    (ApplyError, exit_codes.STATE),
    # A secret's unsafe path is refused inside the pass; one that gets here is our own
    # state's (a loose or foreign state_dir, a symlink planted in it).
    (UnsafePathError, exit_codes.STATE),
    (OSError, exit_codes.STATE),
    (SecretAgentError, exit_codes.INTERNAL),
)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit code (never raises SystemExit itself
    except through argparse's --help/--version/usage errors)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["dev-server"]:
        # Its own parser (argparse's REMAINDER would not take a leading --flag).
        return _dev_server(argv[1:], out)
    if argv[:1] == ["exec"]:
        # exec runs before every launched command: parse only its own flags.
        args = exec_parser().parse_args(argv[1:])
        args.command = "exec"
    else:
        args = build_parser().parse_args(argv)
    try:
        return _dispatch(args, out=out, err=err)
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes a code
        return _fail(exc, err)


def _dispatch(args: argparse.Namespace, *, out: TextIO, err: TextIO) -> int:
    """Run one subcommand; each imports what it needs, and no more."""
    from secret_agent.hardening import disable_core_dumps

    # Before the config reads a token (every command does, status too) or values come.
    disable_core_dumps()
    config = load(args)
    from secret_agent.recall import forget_legacy_snapshot

    # Every command, not only those that apply: the file holds every value.
    forget_legacy_snapshot(config.sync.state_dir)
    if args.command == "run":
        from secret_agent.daemon.run import cmd_run

        return cmd_run(config, once=args.once, load=lambda: load(args))
    if args.command == "check":
        from secret_agent.check import cmd_check

        return cmd_check(config, out=out)
    if args.command == "status":
        from secret_agent.status import cmd_status

        return cmd_status(config, as_json=args.json, out=out)
    if args.watch:
        from secret_agent.exec.watch import run_watch

        return run_watch(config, args, load=lambda: load(args))
    from secret_agent.exec.once import cmd_exec

    return cmd_exec(args, config, err=err)


def _dev_server(argv: Sequence[str], out: TextIO) -> int:
    from secret_agent.hardening import disable_core_dumps

    disable_core_dumps()  # it holds every user's values and tokens
    from secret_agent.devserver.server import add_arguments
    from secret_agent.devserver.server import main as devserver_main

    parser = argparse.ArgumentParser(
        prog="secret-agent dev-server", description="A local Coder-compatible user-secrets server."
    )
    add_arguments(parser)
    return devserver_main(parser.parse_args(argv), out)


def _fail(exc: BaseException, err: TextIO) -> int:
    from secret_agent.redact import scrub

    if isinstance(exc, LaunchError):
        print(f"secret-agent: error: {scrub(str(exc))}", file=err)
        return exc.exit_code
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            if code == exit_codes.INTERNAL:
                break
            print(f"secret-agent: error: {scrub(str(exc))}", file=err)
            return code
    print(
        f"secret-agent: internal error: {type(exc).__name__}: {scrub(str(exc))}"
        " (this is a bug; please report it)",
        file=err,
    )
    return exit_codes.INTERNAL
