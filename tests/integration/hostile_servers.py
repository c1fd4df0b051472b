"""Hostile loopback HTTP servers for the network tests: raw sockets, canned bytes.

`RawServer` reads each request head on a real TCP connection (keep-alive: many
requests per connection), records it, and answers with the bytes `answer(path)`
gives: a part sent at once and a part trickled one byte per `interval` seconds.
It counts connections, so a test can assert that a client reused one, or that a
host it must never reach was never reached.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server sends: `now` at once, then `trickle` one byte at a time."""

    now: bytes
    trickle: bytes = b""


@dataclass(frozen=True, slots=True)
class Seen:
    """One request head as it arrived: method, target, headers (names lower-cased)."""

    method: str
    target: str
    headers: dict[str, str]


@dataclass
class RawServer:
    """A loopback server answering every request with `answer(target)`."""

    answer: Callable[[str], Reply]
    interval: float = 0.2
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _sock: socket.socket = field(default_factory=socket.socket)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._sock.listen()
        self._sock.settimeout(0.1)
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self._sock.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                    continue
                buffer = rest
                seen = _parse(head)
                self.requests.append(seen)
                if not self._send(conn, self.answer(seen.target)):
                    return

    def _send(self, conn: socket.socket, reply: Reply) -> bool:
        try:
            conn.sendall(reply.now)
            for i in range(len(reply.trickle)):
                if self._stop.wait(self.interval):
                    return False
                conn.sendall(reply.trickle[i : i + 1])
        except OSError:  # the client gave up: what a bounded client does
            return False
        return True


def _parse(head: bytes) -> Seen:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = [*lines[0].split(" "), "", ""][:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Seen(method=method, target=target, headers=headers)


@contextmanager
def raw_server(answer: Callable[[str], Reply], *, interval: float = 0.2) -> Iterator[RawServer]:
    """A started `RawServer`, stopped (threads joined) on exit."""
    server = RawServer(answer=answer, interval=interval)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def response(
    status: str, body: bytes = b"", *, headers: str = "", ctype: str = "application/json"
) -> bytes:
    """A keep-alive HTTP/1.1 answer with a Content-Length."""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        f"{headers}\r\n"
    )
    return head.encode() + body


BUILDINFO = response("200 OK", b'{"version":"v2.33.1","external_url":"x"}')
