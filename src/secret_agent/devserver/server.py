"""Running the dev server: in a background thread for tests, in the foreground for the CLI.

Both ways bind the listening socket first (so port 0 yields the real port before
anything starts) and hand it to uvicorn. Readiness is uvicorn's own: a hook after its
`startup()` sets an event (thread) or prints the handshake (CLI), so nobody waits with
a sleep, and the handshake is printed only once requests can be served::

    secret-agent dev-server listening on http://127.0.0.1:PORT
    CODER_URL=http://127.0.0.1:PORT
    CODER_SESSION_TOKEN=<token>
    CODER_AGENT_URL=http://127.0.0.1:PORT
    CODER_AGENT_TOKEN=<agent token>

The first three lines are the handshake scripts wait for; the agent lines are what a
workspace process would see in its environment, for the `agent` value source.

SIGINT and SIGTERM stop the foreground server gracefully with exit code 0. uvicorn's
own handler would re-raise the signal after shutdown (exit 130/143), so ours records
it and nothing more.

starlette and uvicorn are an optional extra: this module imports them only inside the
functions that run a server, so the CLI can say what to install when they are missing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, TextIO

from secret_agent.devserver.store import Store
from secret_agent.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from secret_agent.devserver.agentrpc import AgentRPC
    from secret_agent.devserver.app import RequestLog

START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 10.0
DEFAULT_USER: Final = "developer"
MISSING_EXTRA: Final = (
    "secret-agent dev-server needs starlette and uvicorn;"
    " install them with: pip install 'secret-agent[devserver]'"
)
# Exit code for a bad flag, seed or persist file (argparse's usage code).
EXIT_CONFIG: Final = 2


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, ...).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", key="--port") from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _DenialNoise(logging.Filter):
    """Drops uvicorn's false alarm after an HTTP answer to a WebSocket upgrade.

    The agent RPC refuses a bad token or version with an HTTP answer before the
    upgrade, as coderd does; uvicorn's sans-I/O WebSocket protocol sends it, then logs
    "ASGI callable returned without completing handshake" at ERROR all the same.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("ASGI callable returned without completing")


def _uvicorn_server(
    app: Starlette, *, on_started: Callable[[], None], handle_signals: bool
) -> uvicorn.Server:
    """A uvicorn server for `app` that calls `on_started` once it serves requests.

    On shutdown, live agent RPC sessions get GoAway(0) before uvicorn closes them.
    """
    import uvicorn  # optional extra, see module docstring

    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialNoise) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_DenialNoise())
    agent_rpc: AgentRPC = app.state.agent_rpc

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                on_started()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await agent_rpc.go_away_all()
            await super().shutdown(sockets=sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Record only: uvicorn's version re-raises the signal once shut down.
            if not handle_signals or threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, original in originals.items():
                    signal.signal(sig, original)

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        # coderd never negotiates permessage-deflate on the agent RPC (§1.4).
        ws_per_message_deflate=False,
        # Logging is configured by the program that runs us, never by a library.
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    return _Server(config)


class ThreadedDevServer:
    """The dev server on a free loopback port, in a background thread.

    Use as a context manager (or call `start` and `stop`); `start` returns once
    uvicorn serves requests. `url`, `port`, `app`, `store`, `request_log` and
    `agent_rpc` (the agent RPC's counters and test hooks) are ready to use after
    `start`; the store may be changed directly at any time.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        inline_values: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        from secret_agent.devserver.app import create_app  # optional extra

        self.store = Store() if store is None else store
        self.app = create_app(self.store, inline_values=inline_values)
        self.request_log: RequestLog = self.app.state.request_log
        self.agent_rpc: AgentRPC = self.app.state.agent_rpc
        self.host = host
        self.port = port
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ThreadedDevServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> ThreadedDevServer:
        """Bind, start uvicorn in a thread and wait until it serves.

        Raises:
            ConfigError: the address cannot be bound.
            RuntimeError: already started, or uvicorn did not start in time.
        """
        if self._thread is not None:
            raise RuntimeError("this dev server was already started")
        sock = _listen(self.host, self.port)
        self.port = int(sock.getsockname()[1])
        self.url = _url(sock)
        started = threading.Event()
        self._server = _uvicorn_server(self.app, on_started=started.set, handle_signals=False)
        self._thread = threading.Thread(
            target=self._run, args=(self._server, sock, started), name="devserver", daemon=True
        )
        self._thread.start()
        started.wait(START_TIMEOUT)
        if not self._server.started:
            self.stop()
            raise RuntimeError("the dev server did not start; uvicorn logged why")
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket, started: threading.Event) -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
            # Wake `start` even when startup failed, so it fails fast instead of timing out.
            started.set()

    def stop(self) -> None:
        """Shut uvicorn down and join its thread; a no-op when not running."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            # A connection still open after the grace period: cut it.
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT)


def _prepare_store(
    *, seed: str | None, persist: str | None, username: str, token: str | None
) -> tuple[Store, str, str]:
    """The store to serve, with `username` present and holding tokens; and the session
    token and agent token to print.

    A persist file that already holds users wins over the seed, so restarting with the
    same flags neither re-seeds nor conflicts. Without `token`, the user's oldest
    session token is reused, else a new one is issued; likewise the agent token.

    Raises:
        ConfigError: a bad seed or persist file, username or token.
    """
    store = Store(persist_path=persist)
    if seed is not None and not store.users():
        store.load_seed(seed)
    try:
        if store.get_user(username) is None:
            store.add_user(username)
        if token is not None:
            store.add_token(username, token)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--token" if token else "--user") from None
    held = store.tokens(username)
    session = token if token is not None else held[0] if held else store.issue_token(username)
    agents = store.agent_tokens(username)
    return store, session, agents[0] if agents else store.issue_agent_token(username)


def serve(
    *,
    host: str,
    port: int,
    seed: str | None,
    persist: str | None,
    inline_values: bool,
    username: str = DEFAULT_USER,
    token: str | None = None,
    out: TextIO,
) -> int:
    """Run the dev server in the foreground until SIGINT or SIGTERM; return 0.

    Prints the handshake lines to `out` (flushed) once requests can be served.
    Port 0 picks a free port; the printed URL has the real one.

    Raises:
        ConfigError: unusable flags, seed or persist file, or an address in use.
        ImportError: starlette or uvicorn is not installed.
    """
    from secret_agent.devserver.app import create_app  # optional extra

    store, session_token, agent_token = _prepare_store(
        seed=seed, persist=persist, username=username, token=token
    )
    app = create_app(store, inline_values=inline_values)
    sock = _listen(host, port)
    url = _url(sock)

    def announce() -> None:
        out.write(
            f"secret-agent dev-server listening on {url}\n"
            f"CODER_URL={url}\n"
            f"CODER_SESSION_TOKEN={session_token}\n"
            f"CODER_AGENT_URL={url}\n"
            f"CODER_AGENT_TOKEN={agent_token}\n"
        )
        out.flush()

    server = _uvicorn_server(app, on_started=announce, handle_signals=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `dev-server` flags to `parser`."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)"
    )
    parser.add_argument("--seed", metavar="FILE", help="JSON file of users, tokens and secrets")
    parser.add_argument(
        "--persist",
        metavar="FILE",
        help="JSON file the store is loaded from and saved to (0600) after every change",
    )
    parser.add_argument(
        "--inline-values",
        action="store_true",
        help='include "value" when a secret is fetched by name (Coder never does)',
    )
    parser.add_argument(
        "--user",
        default=DEFAULT_USER,
        metavar="NAME",
        help="user whose session token is printed; created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="session token to accept and print instead of a generated one"
        " (argv is visible to other local users)",
    )


def main(args: argparse.Namespace, out: TextIO) -> int:
    """Run `secret-agent dev-server` with parsed `args`; return the exit code.

    Errors go to stderr: a missing extra or a bad flag or file gives a one-line
    message and a non-zero code instead of a traceback.
    """
    try:
        import starlette  # noqa: F401 - only to check the extra is installed
        import uvicorn  # noqa: F401
    except ImportError:
        sys.stderr.write(MISSING_EXTRA + "\n")
        return 1
    try:
        return serve(
            host=args.host,
            port=args.port,
            seed=args.seed,
            persist=args.persist,
            inline_values=args.inline_values,
            username=args.user,
            token=args.token,
            out=out,
        )
    except ConfigError as exc:
        sys.stderr.write(f"secret-agent dev-server: {exc}\n")
        return EXIT_CONFIG
