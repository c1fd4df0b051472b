"""`secret-agent status`: what the running daemon last did, from its status file.

Reads `state_dir/status.json` only: no network, no lock, and never a value (the
file holds none). `--json` prints the document as is, plus `running`.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from secret_agent.config import Config
from secret_agent.status_file import pid_alive, read_status

EXIT_OK = 0
EXIT_NOT_SYNCED = 1  # no status yet, or the last attempt failed
EXIT_NO_DAEMON = 3  # the daemon that wrote the status is not running (LSB: not running)


def cmd_status(config: Config, *, as_json: bool, out: TextIO) -> int:
    doc = read_status(config.sync.state_dir)
    if doc is None:
        if as_json:
            print(json.dumps({"running": False, "phase": "never-run"}), file=out)
        else:
            print(f"no status in {config.sync.state_dir}: the daemon has not run yet", file=out)
        return EXIT_NO_DAEMON
    running = doc.get("phase") != "stopped" and pid_alive(doc.get("pid"))
    if as_json:
        print(json.dumps({**doc, "running": running}, indent=1, sort_keys=True), file=out)
    else:
        _print_human(doc, running, out)
    if not running:
        return EXIT_NO_DAEMON
    return EXIT_OK if doc.get("phase") == "synced" else EXIT_NOT_SYNCED


def _print_human(doc: dict[str, Any], running: bool, out: TextIO) -> None:
    state = f"running (pid {doc.get('pid')})" if running else "not running"
    print(f"daemon:          {state}, {doc.get('phase')}", file=out)
    print(f"last good sync:  {doc.get('last_good_sync') or 'never'}", file=out)
    if doc.get("last_error"):
        failures = doc.get("consecutive_failures")
        print(
            f"last error:      {doc.get('last_error_kind')}: {doc.get('last_error')}"
            f" ({failures} in a row)",
            file=out,
        )
    if doc.get("next_attempt"):
        print(f"next attempt:    {doc.get('next_attempt')}", file=out)
    if doc.get("env_file"):
        print(f"env file:        {doc.get('env_file')}", file=out)
    if doc.get("env_file_backup"):
        print(f"                 (your file that was there: {doc['env_file_backup']})", file=out)
    secrets = doc.get("secrets") or []
    print(f"secrets:         {len(secrets)}", file=out)
    for s in secrets:
        target = s.get("path") or "-"
        env = f" ${s.get('env_name')}" if s.get("env_name") else ""
        sha = f" {s.get('short_sha')}" if s.get("short_sha") else ""
        err = f" ({s.get('error')})" if s.get("error") else ""
        kept = f" [your file that was there: {s['backup']}]" if s.get("backup") else ""
        print(f"  {s.get('name')}: {s.get('state')} {target}{env}{sha}{err}{kept}", file=out)
