"""`secret-agent status`: what the running daemon last did, from its status file.

Reads `state_dir/status.json` only: no network, no lock, and never a value (the
file holds none). `--json` prints the document, plus `running`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TextIO

from secret_agent import exit_codes
from secret_agent.config import Config
from secret_agent.status_file import FORMAT_VERSION, Status, pid_alive, read_status


def cmd_status(config: Config, *, as_json: bool, out: TextIO) -> int:
    status = read_status(config.sync.state_dir)
    if status is None:
        if as_json:
            print(json.dumps({"running": False, "phase": "never-run"}), file=out)
        else:
            print(f"no status in {config.sync.state_dir}: the daemon has not run yet", file=out)
        return exit_codes.NOT_RUNNING
    running = status.phase != "stopped" and pid_alive(status.pid)
    if as_json:
        doc = {"format": FORMAT_VERSION, **asdict(status), "running": running}
        print(json.dumps(doc, indent=1, sort_keys=True), file=out)
    else:
        _print_human(status, running, out)
    if not running:
        return exit_codes.NOT_RUNNING
    return exit_codes.OK if status.phase == "synced" else exit_codes.PARTIAL


def _print_human(status: Status, running: bool, out: TextIO) -> None:
    state = f"running (pid {status.pid})" if running else "not running"
    print(f"daemon:          {state}, {status.phase}", file=out)
    print(f"last good sync:  {status.last_good_sync or 'never'}", file=out)
    if status.last_error:
        print(
            f"last error:      {status.last_error_kind}: {status.last_error}"
            f" ({status.consecutive_failures} in a row)",
            file=out,
        )
    if status.next_attempt:
        print(f"next attempt:    {status.next_attempt}", file=out)
    if status.env_file:
        print(f"env file:        {status.env_file}", file=out)
    if status.env_file_backup:
        print(f"                 (your file that was there: {status.env_file_backup})", file=out)
    print(f"secrets:         {len(status.secrets)}", file=out)
    for s in status.secrets:
        target = s.path or "-"
        env = f" ${s.env_name}" if s.env_name else ""
        sha = f" {s.short_sha}" if s.short_sha else ""
        err = f" ({s.error})" if s.error else ""
        kept = f" [your file that was there: {s.backup}]" if s.backup else ""
        print(f"  {s.name}: {s.state} {target}{env}{sha}{err}{kept}", file=out)
