"""The systemd notify protocol: datagrams to `$NOTIFY_SOCKET`.

A dozen lines do what libsystemd's `sd_notify` does for us: `READY=1`, `STATUS=...`,
`WATCHDOG=1`, `STOPPING=1`, each one datagram. An address starting with `@` is in the
abstract namespace. Without `NOTIFY_SOCKET` (not under systemd) every call is a
no-op. A failed send is swallowed: systemd being away must never stop the agent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Final

READY: Final = "READY=1"
STOPPING: Final = "STOPPING=1"
WATCHDOG: Final = "WATCHDOG=1"
RELOADING: Final = "RELOADING=1"


class Notifier:
    """Sends notify messages to the socket named in the environment given."""

    def __init__(self, env: Mapping[str, str]) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        valid = usec.isascii() and usec.isdigit() and int(usec) > 0
        # WATCHDOG_PID, when set, names the process systemd expects pings from.
        self.watchdog_interval = (
            int(usec) / 1e6 / 2 if valid and pid in ("", str(os.getpid())) else 0.0
        )

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> bool:
        """Send one datagram of newline-joined `KEY=value` lines; True if it went out."""
        if not self._address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError:
            return False
        return True

    def status(self, text: str) -> bool:
        # A newline would start a new assignment: STATUS is one line by protocol.
        return self.send("STATUS=" + " ".join(text.split()))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
