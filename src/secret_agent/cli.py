"""The `secret-agent` command: argument parsing, exit codes, and error messages.

Each subcommand imports what it needs inside its handler, so `--help` and `--version`
cost no more than argparse. Exceptions become one line on stderr and an exit code
from one table (`EXIT_CODES`); a bug becomes 70 with its type, never a traceback that
could carry a value.

Exit codes: `exit_codes` (README's table is its `TABLE`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from secret_agent import __version__, exit_codes
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
    from secret_agent.config import Config


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

EXEC_DESCRIPTION = (
    "Run CMD with the secret variables set (they win over inherited ones) and the secret"
    " files in place. By default secret-agent replaces itself with CMD, so signals and the"
    " exit code are CMD's own; --watch stays as the parent (a container entrypoint)."
)

_FLAG_KEYS = {
    "url": "coder.url",
    "token_file": "coder.token_file",
    "user": "coder.user",
    "source": "values.source",
    "state_dir": "sync.state_dir",
    "env_file": "env_file.path",
    "env_format": "env_file.format",
    "log_level": "log.level",
    "log_format": "log.format",
}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SECRET_AGENT_CONFIG,"
        " else $XDG_CONFIG_HOME/secret-agent/config.toml)",
    )
    p.add_argument("--url", help="Coder URL (coder.url; env CODER_URL)")
    p.add_argument("--token-file", help="file holding the session token (coder.token_file)")
    p.add_argument("--user", help="whose secrets: me, a username or a UUID (coder.user)")
    p.add_argument("--source", choices=["auto", "inline", "agent"], help="values.source")
    p.add_argument("--state-dir", help="sync.state_dir")
    p.add_argument("--env-file", metavar="PATH", help='env_file.path ("" turns it off)')
    p.add_argument(
        "--env-format",
        choices=["posix", "dotenv", "systemd", "docker", "json"],
        help="env_file.format",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["auto", "console", "json"])


def _add_exec_args(p: argparse.ArgumentParser) -> None:
    _add_config_flags(p)
    p.add_argument(
        "--fresh",
        action="store_true",
        help="ask Coder now even if a running daemon's state is recent",
    )
    p.add_argument(
        "--require-fresh",
        action="store_true",
        help="fail (exit 4) rather than fall back to the last known good state"
        " when Coder cannot be asked",
    )
    p.add_argument(
        "--max-age",
        metavar="DURATION",
        help="how old a running daemon's last good sync may be to be used without"
        " asking Coder (default: 3 x sync.interval, at least 60s)",
    )
    _add_watch_flags(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter without its `shutil` import (terminal width from $COLUMNS):
    `exec` runs on every launch and should not pay for it."""

    def __init__(self, prog: str) -> None:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) - 2 if columns.isdigit() and int(columns) > 20 else 98
        super().__init__(prog, width=width)


def _exec_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secret-agent exec", formatter_class=_Formatter, description=EXEC_DESCRIPTION
    )
    _add_exec_args(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secret-agent",
        formatter_class=_Formatter,
        description="Keeps your Coder user secrets in files and an env file, and current.",
        epilog="Exit codes: 0 ok, 1 some secrets not applied, 2 usage/config, 3 credentials,"
        " 4 Coder unavailable, 5 no value source, 6 local state, 70 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"secret-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="sync secrets (the daemon; --once syncs once and exits)")
    _add_config_flags(run)
    run.add_argument(
        "--once", action="store_true", help="sync once; exit 0 only if every secret applied"
    )

    check = sub.add_parser(
        "check",
        help="config, reachability, auth, write access, and the plan"
        " (names, paths, modes, short hashes; never a value)",
    )
    _add_config_flags(check)

    status = sub.add_parser("status", help="what the running daemon last did (never a value)")
    _add_config_flags(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    ex = sub.add_parser(
        "exec",
        help="run a command with the secrets in its environment (files ensured first)",
        description=EXEC_DESCRIPTION,
    )
    _add_exec_args(ex)

    # The dev server parses its own flags: building its parser here would import it on
    # every start, and `exec`'s fast path must stay light.
    dev = sub.add_parser(
        "dev-server", add_help=False, help="a local Coder-compatible server for trying the agent"
    )
    dev.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _add_watch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--watch",
        action="store_true",
        help="stay as the parent (container entrypoint): forward signals, reap"
        " zombies as PID 1, keep secrets current and act on changes",
    )
    p.add_argument(
        "--on-change",
        default="restart",
        metavar="ACTION",
        help="with --watch, what a secret change does: restart (default),"
        " signal:NAME (e.g. signal:SIGHUP), or none",
    )
    p.add_argument(
        "--grace",
        default="10s",
        metavar="DURATION",
        help="with --watch, how long a stopping child gets before SIGKILL",
    )
    p.add_argument(
        "--debounce",
        default="2s",
        metavar="DURATION",
        help="with --watch, quiet time after a change before acting on it",
    )
    p.add_argument(
        "--splay",
        default="0s",
        metavar="DURATION",
        help="with --watch, extra random delay (0..DURATION) before acting",
    )


def load(args: argparse.Namespace) -> Config:
    from secret_agent.config import load_config

    overrides = {
        key: getattr(args, attr)
        for attr, key in _FLAG_KEYS.items()
        if getattr(args, attr, None) is not None
    }
    return load_config(path=args.config, env=os.environ, overrides=overrides)


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
        args = _exec_parser().parse_args(argv[1:])
        args.command = "exec"
    else:
        args = build_parser().parse_args(argv)
    try:
        return _dispatch(args, out=out, err=err)
    except KeyboardInterrupt:
        return 130
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
