"""`secret-agent exec`: decide where the values come from, then execve (or supervise).

1. Fast path: a running daemon whose last good sync is within `--max-age` -> the
   values read back from its files and env file (`recall`), no network, no heavy
   import (`exec.fast_path`), provided every secret exec could deliver was read back.
2. Otherwise (or with `--fresh`): one sync pass against Coder, as `run --once` does.
3. Coder cannot be asked: the values read back from disk (the last known good), with
   a warning on stderr naming any secret that could not be; with `--require-fresh`,
   exit 4 instead.
Then the files are ensured, the environment built (secret variables win), and the
process replaced by the command. Warnings name secrets, never values.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from secret_agent import exit_codes
from secret_agent.config import Config, parse_duration
from secret_agent.errors import (
    CoderError,
    CredentialsError,
    LaunchError,
    StaleStateError,
)
from secret_agent.exec import fast_path
from secret_agent.model import DesiredState


def command_of(args: argparse.Namespace) -> list[str]:
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise LaunchError(
            "no command given: use `secret-agent exec [OPTIONS] -- CMD [ARGS...]`",
            exit_code=exit_codes.USAGE,
        )
    return argv


def cmd_exec(args: argparse.Namespace, config: Config, *, err: TextIO) -> int:
    argv = command_of(args)
    desired = values_for_exec(args, config, err=err)
    report = fast_path.ensure_files(config, desired)
    child = fast_path.prepare_env(config, desired, os.environ)
    for refusal in (*(report.refused if report else ()), *child.refused):
        _warn(err, f"not delivered: {refusal}")
    err.flush()
    sys.stdout.flush()
    return fast_path.exec_command(argv, child.env)


def values_for_exec(args: argparse.Namespace, config: Config, *, err: TextIO) -> DesiredState:
    """The desired state `exec` runs with (see the module docstring for the order).

    Raises:
        StaleStateError: `--require-fresh` and Coder cannot be asked, or there is no
            state at all to fall back to.
    """
    if not args.fresh:
        max_age = (
            parse_duration(args.max_age, key="--max-age")
            if args.max_age
            else fast_path.default_max_age(config)
        )
        local = fast_path.daemon_state(config, max_age=max_age)
        if local is not None:
            return local
    try:
        return _fetch(config, err)
    except (CoderError, CredentialsError) as exc:
        if isinstance(exc, CoderError) and not exc.retryable:
            raise  # Coder answered (400, 403, 404...): not an outage to ride out
        if args.require_fresh:
            raise StaleStateError(f"cannot get fresh secrets ({exc}); --require-fresh") from exc
        fallback = fast_path.last_known_good(config)
        if fallback is None:
            raise StaleStateError(
                f"cannot get secrets ({exc}) and no secret delivered earlier could be read"
                f" back from its file or the env file (state_dir {config.sync.state_dir})"
            ) from exc
        found, when = fallback
        _warn(
            err,
            f"{exc}; running with the last known good secrets, read back from their files"
            f" and the env file (from {when or 'an earlier sync'})",
        )
        if found.missing:
            _warn(err, f"not delivered (no value on disk): {', '.join(found.missing)}")
        return found.desired


def _fetch(config: Config, err: TextIO) -> DesiredState:
    from secret_agent.coder import Clients
    from secret_agent.passes import run_pass
    from secret_agent.recall import LastGood

    for url in config.coder.in_clear():
        _warn(err, f"{url} is plain http: the token and values cross the network unencrypted")
    memory = LastGood()
    with Clients(config) as client:
        # exec's flags may differ from the daemon's config: it prunes nothing.
        run_pass(config, client, last_good=memory, release=False)
    desired = memory.state
    if desired is None:  # run_pass has just set it
        raise LaunchError("the state applied a moment ago is gone (this is a bug)")
    return desired


def _warn(err: TextIO, text: str) -> None:
    from secret_agent.redact import scrub

    print(f"secret-agent: warning: {scrub(text)}", file=err)
