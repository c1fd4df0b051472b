"""Helpers for daemon tests: the daemon as a subprocess, a socket playing systemd, a
proxy that injects faults in front of the dev server, and deadline-bound waits."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Workspace


def wait_until(predicate: Callable[[], object], timeout: float, what: str = "condition") -> float:
    """Poll `predicate` until true; return the seconds it took, or fail at the deadline."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class NotifySocket:
    """A unix datagram socket bound where the daemon's NOTIFY_SOCKET points."""

    def __init__(self) -> None:
        # sun_path is limited to 108 bytes, and pytest's tmp_path can be longer.
        self.dir = tempfile.mkdtemp(prefix="sa-notify-", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def drain(self, timeout: float = 0.0) -> list[str]:
        self.sock.settimeout(timeout if timeout > 0 else 0.0001)
        with contextlib.suppress(TimeoutError, BlockingIOError):
            while True:
                data = self.sock.recv(65536)
                self.messages.append(data.decode())
                self.sock.settimeout(0.0001)
        return self.messages

    def wait_for(self, message: str, timeout: float) -> None:
        def seen() -> bool:
            self.drain(0.05)
            return message in self.messages

        wait_until(seen, timeout, f"notify {message!r}")

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Daemon:
    """`python -m secret_agent run` in a workspace, logging JSON to a file."""

    def __init__(self, workspace: Workspace, *, env: dict[str, str] | None = None) -> None:
        self.workspace = workspace
        self.stderr_path = workspace.home.parent / "daemon.stderr"
        self.stdout_path = workspace.home.parent / "daemon.stdout"
        with self.stderr_path.open("wb") as err, self.stdout_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "secret_agent", "run"],
                env={**workspace.env, **(env or {})},
                stdout=out,
                stderr=err,
                cwd=workspace.home,
            )

    def log_text(self) -> str:
        return self.stderr_path.read_text() + self.stdout_path.read_text()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    out.append(event)
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _http(status: str, body: bytes, extra: str = "", length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


FAULTS: dict[str, bytes] = {
    "500": _http(
        "500 Internal Server Error",
        b'{"message":"Internal error listing secrets.","detail":"db down"}',
    ),
    "429": _http(
        "429 Too Many Requests",
        b'{"message":"You have been rate limited."}',
        extra="Retry-After: 2\r\n",
    ),
    "truncated": _http("200 OK", b'[{"name": "a", "upd'),
}


class FaultProxy:
    """A loopback HTTP proxy to `upstream` that answers with a canned fault when set."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fault: str | None = None
        self.faults_sent = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                if proxy.fault is not None:
                    proxy.faults_sent += 1
                    self.wfile.write(FAULTS[proxy.fault])
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                resp = httpx.request(
                    self.command, proxy.upstream + self.path, headers=headers, content=body
                )
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815 - http.server names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def running(daemon: Daemon) -> Iterator[Daemon]:
    try:
        yield daemon
    finally:
        if daemon.alive():
            daemon.proc.kill()
            daemon.proc.wait()


def daemon_config(
    workspace: Workspace,
    *,
    interval: str = "1s",
    backoff_initial: str = "200ms",
    backoff_max: str = "2s",
    extra: str = "",
) -> None:
    workspace.write_config(
        f'[sync]\ninterval = "{interval}"\njitter = 0.1\nbackoff_initial = "{backoff_initial}"\n'
        f'backoff_max = "{backoff_max}"\n\n[log]\nformat = "json"\nlevel = "debug"\n{extra}'
    )


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
