"""The command line's arguments: every subcommand's flags, and the config they make.

Apart from `cli` so a reader finds each flag, its help and its config key in one
place. argparse only: `exec` parses its own flags here on every launch.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from secret_agent import __version__, exit_codes

if TYPE_CHECKING:
    from secret_agent.config import Config

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


def exec_parser() -> argparse.ArgumentParser:
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
        epilog="Exit codes: "
        + ", ".join(f"{code} {brief}" for code, brief, _ in exit_codes.TABLE)
        + " (README: Exit codes).",
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
