"""The snapshot: the last desired state fetched from Coder, values included.

Why it exists: a steady-state poll is one list request, so the values of unchanged
secrets are not fetched again; yet a rotation of one secret rewrites the env file,
which needs every value. The snapshot (`state_dir/values.json`, mode 0600, written
atomically like every other file) supplies them, and is the last known good state
that `exec` starts from when Coder is away.

It holds values exactly as the env file does, with the same protection, and nothing
else holds them: the ledger and the status file never do.
"""

from __future__ import annotations

import json
import os
from typing import Final

from secret_agent import files
from secret_agent.errors import UnsafePathError
from secret_agent.model import DesiredSecret, DesiredState
from secret_agent.redact import Secret, known_values

SNAPSHOT_NAME: Final = "values.json"
FORMAT_VERSION: Final = 1
EMPTY: Final = DesiredState(secrets=())


def snapshot_path(state_dir: str) -> str:
    return os.path.join(state_dir, SNAPSHOT_NAME)


def load_snapshot(state_dir: str) -> DesiredState | None:
    """Read the last fetched state; None when there is none or it is unreadable.

    An unreadable snapshot only costs a full fetch, so it is not an error. None is not
    an empty state: restoring from "no snapshot" must never prune anything.
    """
    path = snapshot_path(state_dir)
    try:
        doc = json.loads(files.read_private(path))
        if doc.get("version") != FORMAT_VERSION:
            return None
        secrets = tuple(
            DesiredSecret(
                name=str(s["name"]),
                env_name=str(s["env_name"]),
                file_path=str(s["file_path"]),
                value=Secret(str(s["value"])),
                version=(str(s["updated_at"]), str(s["env_name"]), str(s["file_path"])),
            )
            for s in doc["secrets"]
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnsafePathError):
        return None
    known_values.add(s.value.reveal() for s in secrets)
    return DesiredState(secrets=secrets)


def save_snapshot(state_dir: str, state: DesiredState) -> None:
    """Write the state atomically with mode 0600."""
    doc = {
        "version": FORMAT_VERSION,
        "secrets": [
            {
                "name": s.name,
                "env_name": s.env_name,
                "file_path": s.file_path,
                "updated_at": s.version[0],
                "value": s.value.reveal(),
            }
            for s in state.secrets
        ],
    }
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    files.write_atomic(snapshot_path(state_dir), text.encode(), roots=None)
