"""`secret-agent check`: config, reachability, auth, write access, and the plan.

A dry run: nothing is written. The plan is shown as names, paths, modes and short
hashes; never a value (consul-template's dry mode prints contents, which for secrets
is a leak).
"""

from __future__ import annotations

import os
from typing import TextIO

from secret_agent import exit_codes
from secret_agent.actions import ForgetFile, KeepFile, Plan, RemoveFile, WriteFile
from secret_agent.coder import Clients
from secret_agent.config import Config
from secret_agent.passes import plan_pass

SHORT = 12


def _writable(path: str, *, is_dir: bool) -> bool:
    """Whether entries can be created where `path` (a directory, or a file's) lives."""
    probe = path if is_dir else os.path.dirname(path)
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return os.access(probe, os.W_OK | os.X_OK)


def _rows(plan: Plan, file_mode: int) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    mode = f"{file_mode:04o}"
    for a in plan.files:
        if isinstance(a, WriteFile):
            verb = "fix-mode" if a.mode_only else "write"
            if a.make_backup:
                verb = f"write (yours kept as {a.backup})"
            rows.append((verb, a.secret, a.path, mode, a.sha[:SHORT]))
        elif isinstance(a, KeepFile):
            rows.append(("keep", a.secret, a.path, mode, a.sha[:SHORT]))
        elif isinstance(a, RemoveFile):
            verb = f"remove (put back {a.restore})" if a.restore else "remove"
            rows.append((verb, a.secret or "(env file)", a.path, "", a.sha[:SHORT]))
        elif isinstance(a, ForgetFile):
            rows.append((f"forget ({a.state.value})", a.secret or "(env file)", a.path, "", ""))
    if plan.env_file is not None:
        env = plan.env_file
        verb = "keep" if env.unchanged else "write"
        if env.make_backup:
            verb = f"write (yours kept as {env.backup})"
        rows.append(
            (
                verb,
                f"(env file: {len(env.variables)} vars)",
                env.path,
                "0600",
                env.sha[:SHORT],
            )
        )
    return rows


def cmd_check(config: Config, *, out: TextIO) -> int:
    """Print what `run --once` would do; 0 when it would apply everything cleanly.

    Raises:
        CoderError, CredentialsError, ValueSourceError, LedgerError: as `run --once`.
    """
    print(f"config:    {config.source_file or '(defaults; no config file)'}", file=out)
    problems = 0
    for label, path, is_dir in (
        ("state_dir", config.sync.state_dir, True),
        ("env_file", config.env_file.path, False),
    ):
        if not path:
            print(f"{label + ':':<10} off", file=out)
            continue
        ok = _writable(path, is_dir=is_dir)
        problems += not ok
        print(f"{label + ':':<10} {path} ({'writable' if ok else 'NOT WRITABLE'})", file=out)
    coder = config.coder
    if coder.url:
        print(f"coder:     {coder.url} (user {coder.user})", file=out)
    else:  # agent-only mode: no session token, the manifest is everything
        print(
            f"coder:     {coder.agent_url} (agent token only: values and targets from"
            " the workspace agent RPC)",
            file=out,
        )
    for url in coder.in_clear():
        print(
            f"           warning: {url} is plain http to a host that is not loopback: the"
            " token and the values cross the network unencrypted; use https://",
            file=out,
        )
    with Clients(config) as client:
        planned = plan_pass(config, client)
    print(
        f"           reachable and authorized: {len(planned.desired.secrets)} secrets to deliver,"
        f" {planned.desired.requests} requests",
        file=out,
    )
    rows = _rows(planned.plan, config.sync.file_mode)
    print("plan:", file=out)
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print(
                "  "
                + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
                + "  "
                + r[4],
                file=out,
            )
    else:
        print("  (nothing to do)", file=out)
    for refusal in planned.plan.refused:
        problems += 1
        print(f"refused:   {refusal}", file=out)
    if planned.plan.env_refused:
        problems += 1
        print(f"refused:   {planned.plan.env_refused}", file=out)
    return exit_codes.OK if problems == 0 else exit_codes.PARTIAL
