"""notify: datagrams to a real unix socket bound by the test, as systemd would bind it.

The test plays systemd: it binds an `AF_UNIX, SOCK_DGRAM` socket (a path in
`tmp_path`, or a name in the abstract namespace) and reads what the notifier sent.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from secret_agent.notify import READY, STOPPING, WATCHDOG, Notifier

MakeNotifier = Callable[[Mapping[str, str]], Notifier]


@pytest.fixture
def make_notifier() -> Iterator[MakeNotifier]:
    """Notifiers built from an env mapping, all closed after the test."""
    made: list[Notifier] = []

    def make(env: Mapping[str, str]) -> Notifier:
        notifier = Notifier(env)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close()


def _bind(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket at a filesystem path, and that path."""
    path = str(tmp_path / "notify.sock")
    assert len(path.encode()) < 108, "tmp_path too long for a unix socket address"
    sock = _bind(path)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram queued on `sock`: waits (bounded) for the first, then drains."""
    datagrams = [sock.recv(65536)]
    sock.setblocking(False)
    try:
        while True:
            datagrams.append(sock.recv(65536))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return datagrams


def test_ready_arrives_as_one_datagram(
    systemd: tuple[socket.socket, str], make_notifier: MakeNotifier
) -> None:
    """send("READY=1") puts exactly one datagram `READY=1` on the socket and returns True."""
    sock, path = systemd
    notifier = make_notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.send(READY) is True
    assert received(sock) == [b"READY=1"]


def test_several_lines_share_one_datagram(
    systemd: tuple[socket.socket, str], make_notifier: MakeNotifier
) -> None:
    """Lines given to one send go out newline-joined in a single datagram."""
    sock, path = systemd
    notifier = make_notifier({"NOTIFY_SOCKET": path})
    assert notifier.send(READY, "STATUS=synced 3 secrets") is True
    assert received(sock) == [b"READY=1\nSTATUS=synced 3 secrets"]


def test_each_send_is_its_own_datagram(
    systemd: tuple[socket.socket, str], make_notifier: MakeNotifier
) -> None:
    """Successive sends reuse the notifier and arrive as separate datagrams, in order."""
    sock, path = systemd
    notifier = make_notifier({"NOTIFY_SOCKET": path})
    assert notifier.send(WATCHDOG)
    assert notifier.send(STOPPING)
    assert received(sock) == [b"WATCHDOG=1", b"STOPPING=1"]


STATUS_TEXTS = [
    pytest.param("multi\nline", b"STATUS=multi line", id="newline"),
    pytest.param("x\nREADY=1", b"STATUS=x READY=1", id="newline-injects-assignment"),
    pytest.param("a\r\nb", b"STATUS=a b", id="crlf"),
    pytest.param("  padded\t tabs  ", b"STATUS=padded tabs", id="whitespace-runs"),
    pytest.param("a\u2028b", b"STATUS=a b", id="unicode-line-separator"),
    pytest.param("synced \u2713", "STATUS=synced \u2713".encode(), id="non-ascii"),
    pytest.param("", b"STATUS=", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), STATUS_TEXTS)
def test_status_is_a_single_line(
    systemd: tuple[socket.socket, str], make_notifier: MakeNotifier, text: str, expected: bytes
) -> None:
    """status(text) sends one `STATUS=` line: no newline can start another assignment."""
    sock, path = systemd
    notifier = make_notifier({"NOTIFY_SOCKET": path})
    assert notifier.status(text) is True
    datagrams = received(sock)
    assert datagrams == [expected]
    assert b"\n" not in datagrams[0]


def test_abstract_namespace_address(make_notifier: MakeNotifier) -> None:
    """NOTIFY_SOCKET=@name reaches a socket bound to "\\0name" in the abstract namespace."""
    name = f"secret-agent-test-{uuid.uuid4().hex}"
    sock = _bind("\0" + name)
    try:
        notifier = make_notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send(READY) is True
        assert received(sock) == [b"READY=1"]
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent(make_notifier: MakeNotifier) -> None:
    """With no NOTIFY_SOCKET the notifier is disabled and every send returns False."""
    for env in ({}, {"NOTIFY_SOCKET": ""}):
        notifier = make_notifier(env)
        assert notifier.enabled is False
        assert notifier.send(READY) is False
        assert notifier.status("synced") is False


def test_missing_socket_path_is_swallowed(tmp_path: Path, make_notifier: MakeNotifier) -> None:
    """A NOTIFY_SOCKET path that does not exist makes send return False without raising."""
    notifier = make_notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled is True
    assert notifier.send(READY) is False
    assert notifier.send(WATCHDOG) is False  # and keeps failing quietly


def test_closed_listener_is_swallowed(
    systemd: tuple[socket.socket, str], make_notifier: MakeNotifier
) -> None:
    """A socket file whose listener has gone (ECONNREFUSED) makes send return False."""
    sock, path = systemd
    notifier = make_notifier({"NOTIFY_SOCKET": path})
    assert notifier.send(READY) is True
    sock.close()
    assert os.path.exists(path)
    assert notifier.send(WATCHDOG) is False


def test_send_after_close_reopens(
    systemd: tuple[socket.socket, str], make_notifier: MakeNotifier
) -> None:
    """close() releases the socket, and a later send still goes out."""
    sock, path = systemd
    notifier = make_notifier({"NOTIFY_SOCKET": path})
    assert notifier.send(READY)
    notifier.close()
    notifier.close()  # idempotent
    assert notifier.send(STOPPING)
    assert received(sock) == [b"READY=1", b"STOPPING=1"]


def _own_pid() -> str:
    return str(os.getpid())


def _other_pid() -> str:
    return str(os.getpid() + 1)


WATCHDOG_ENVS = [
    pytest.param({"WATCHDOG_USEC": "30000000"}, 15.0, id="30s-halved"),
    pytest.param({"WATCHDOG_USEC": "1"}, 0.0000005, id="1us"),
    pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": _own_pid}, 15.0, id="pid-is-us"),
    pytest.param({}, 0.0, id="unset"),
    pytest.param({"WATCHDOG_USEC": ""}, 0.0, id="empty"),
    pytest.param({"WATCHDOG_USEC": "0"}, 0.0, id="zero"),
    pytest.param({"WATCHDOG_USEC": "abc"}, 0.0, id="not-a-number"),
    pytest.param({"WATCHDOG_USEC": "-5000000"}, 0.0, id="negative"),
    pytest.param({"WATCHDOG_USEC": "1.5"}, 0.0, id="fraction"),
    pytest.param({"WATCHDOG_USEC": " 30000000"}, 0.0, id="leading-space"),
    pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": _other_pid}, 0.0, id="pid-is-other"),
    pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, 0.0, id="pid-is-init"),
    pytest.param(
        {"WATCHDOG_USEC": "\u00b2"},
        0.0,
        id="superscript-digit",
    ),
]


@pytest.mark.parametrize(("env", "expected"), WATCHDOG_ENVS)
def test_watchdog_interval(
    make_notifier: MakeNotifier, env: Mapping[str, str | Callable[[], str]], expected: float
) -> None:
    """watchdog_interval is half of WATCHDOG_USEC in seconds, and 0 when unusable or not ours."""
    resolved = {k: v() if callable(v) else v for k, v in env.items()}
    assert make_notifier(resolved).watchdog_interval == expected
