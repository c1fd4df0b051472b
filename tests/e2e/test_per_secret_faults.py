"""One bad answer fails one secret (issue 8, item 5).

A proxy in front of the dev server answers the get of one secret with a hostile body;
the other secret's rotation must still apply, the bad one keeps its last applied
state, and a get that describes another secret is refused, not written.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from secret_agent.coder import CoderClient
from secret_agent.redact import Secret
from tests.conftest import DevServer, Workspace, assert_no_leak

CANARY = "canary-fault-3b7e"
BAD_PATH = "/api/v2/users/me/secrets/bad"


def _http(status: str, body: bytes, ctype: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


STAMP = "2030-01-01T00:00:00Z"
HOSTILE = {
    "wrong-type": _http("200 OK", b'{"name": "bad", "env_name": 5}'),
    "no-name": _http("200 OK", b'{"env_name": "BAD", "value": "x"}'),
    "html": _http("200 OK", b"<html><body>Sign in</body></html>", "text/html"),
    "http-500": _http("500 Internal Server Error", b'{"message": "db down"}'),
    "not-utf8": _http("200 OK", b'{"name": "bad", "value": "\xff\xfe"}'),
    "five-mib": _http("200 OK", b'{"name": "bad", "value": "' + b"x" * (5 << 20) + b'"}'),
    "another-secret": _http(
        "200 OK",
        (
            '{"name": "evil", "env_name": "EVIL_VAR", "file_path": "~/evil",'
            f' "value": "{CANARY}-evil", "updated_at": "{STAMP}"}}'
        ).encode(),
    ),
    # A proxy's own page: only Coder's JSON 404 means the secret was deleted.
    "proxy-404": _http("404 Not Found", b"<html><h1>Not Found</h1></html>", "text/html"),
    "silent": b"",  # answers nothing until the client gives up
}


class OneSecretFaults:
    """A loopback proxy to the dev server that breaks the get of secret `bad` when set."""

    def __init__(self, upstream: str) -> None:
        self.fault: str | None = None
        self.hits = 0
        proxy = self
        release = self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if proxy.fault is not None and self.path == BAD_PATH:
                    proxy.hits += 1
                    if proxy.fault == "silent":
                        release.wait(30)
                    else:
                        self.wfile.write(HOSTILE[proxy.fault])
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                resp = httpx.get(upstream + self.path, headers=headers)
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def proxied(dev_server: DevServer, workspace: Workspace) -> Iterator[OneSecretFaults]:
    proxy = OneSecretFaults(dev_server.url)
    workspace.env["CODER_URL"] = proxy.url
    workspace.write_config('[coder]\ntimeout = "1s"\n\n[log]\nformat = "json"\n')
    try:
        yield proxy
    finally:
        proxy.close()


def put(server: DevServer, name: str, value: str, **kw: str) -> None:
    with CoderClient(url=server.url, token=Secret(server.token)) as client:
        if kw:
            client.create_secret(name=name, value=Secret(value), **kw)
        else:
            client.update_secret(name, value=Secret(value))


@pytest.mark.parametrize("fault", list(HOSTILE))
def test_a_bad_answer_for_one_secret_fails_that_secret_only(
    dev_server: DevServer, workspace: Workspace, fault: str
) -> None:
    """The good secret's rotation applies; the bad one stays as last applied; exit 1."""
    put(dev_server, "good", f"{CANARY}-good-1", env_name="GOOD", file_path="~/good")
    put(dev_server, "bad", f"{CANARY}-bad-1", env_name="BAD", file_path="~/bad")
    with proxied(dev_server, workspace) as proxy:
        assert workspace.run("run", "--once").returncode == 0
        put(dev_server, "good", f"{CANARY}-good-2")
        put(dev_server, "bad", f"{CANARY}-bad-2")
        proxy.fault = fault
        started = time.monotonic()
        result = workspace.run("run", "--once")
        took = time.monotonic() - started
    assert proxy.hits >= 1
    assert result.returncode == 1, result.stderr
    assert (workspace.home / "good").read_text() == f"{CANARY}-good-2"
    assert (workspace.home / "bad").read_text() == f"{CANARY}-bad-1"
    env = workspace.env_file.read_text()
    assert f"{CANARY}-good-2" in env and f"{CANARY}-bad-1" in env
    assert not (workspace.home / "evil").exists()
    assert "EVIL_VAR" not in env
    assert "secret_fetch_failed" in result.stderr and '"secret": "bad"' in result.stderr
    assert took < 20, "a silent server must not hang the pass"
    assert_no_leak(
        [f"{CANARY}-good-2", f"{CANARY}-bad-1", f"{CANARY}-bad-2", f"{CANARY}-evil"],
        result.stderr,
        result.stdout,
    )


def test_a_failed_secret_with_no_value_on_disk_loses_nothing(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """When the env file cannot be read back and one get fails, the env file is kept as
    it is (with that secret's variable), and the secret's own file stays."""
    put(dev_server, "good", f"{CANARY}-good-1", env_name="GOOD")
    put(dev_server, "bad", f"{CANARY}-bad-1", env_name="BAD", file_path="~/bad")
    with proxied(dev_server, workspace) as proxy:
        assert workspace.run("run", "--once").returncode == 0
        edited = workspace.env_file.read_text() + "# my note\n"
        workspace.env_file.write_text(edited)
        (workspace.home / "bad").write_text("edited by hand")
        proxy.fault = "http-500"
        result = workspace.run("run", "--once")
    assert result.returncode == 1, result.stderr
    assert workspace.env_file.read_text() == edited
    assert (workspace.home / "bad").read_text() == "edited by hand"


def test_status_names_the_secret_that_could_not_be_fetched(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """check and the logs say which secret failed and why, never its value."""
    put(dev_server, "good", f"{CANARY}-good-1", env_name="GOOD")
    put(dev_server, "bad", f"{CANARY}-bad-1", env_name="BAD")
    with proxied(dev_server, workspace) as proxy:
        proxy.fault = "html"
        result = workspace.run("run", "--once")
    assert result.returncode == 1
    assert "HTML" in result.stderr
    assert f"{CANARY}-good-1" in workspace.env_file.read_text()
    assert "BAD" not in workspace.env_file.read_text()
