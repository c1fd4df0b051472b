"""Benchmark the daemon against the dev server on loopback.

1. Idle cost: RSS and CPU of `secret-agent run` over a window (default 60 s) with 50
   secrets at steady state, against a baseline Python process that imports the same
   libraries and sleeps, measured side by side.
2. Requests per poll at steady state (goal: exactly 1).
3. Propagation latency, p50/p99 over 50 rotations at `interval = 1s`: from the update
   on the server to the new bytes in the file. Baseline, in the same process against
   the same server: a naive loop that lists, gets and rewrites everything every 1 s.

Run: python bench/bench_daemon.py [--idle-seconds 60] [--rotations 50]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from seed import USER, seeded_store

from secret_agent.coder import CoderClient
from secret_agent.devserver import Store, ThreadedDevServer
from secret_agent.redact import Secret

TICKS = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds so far, RSS in KiB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return cpu, rss


def start_daemon(url: str, token: str, home: Path, interval: str) -> subprocess.Popen[bytes]:
    cfg = home / "config.toml"
    cfg.write_text(f'[sync]\ninterval = "{interval}"\n[log]\nformat = "json"\nlevel = "debug"\n')
    env = {
        "HOME": str(home),
        "CODER_URL": url,
        "CODER_SESSION_TOKEN": token,
        "SECRET_AGENT_CONFIG": str(cfg),
        "PATH": os.environ.get("PATH", ""),
    }
    err = (home / "daemon.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "secret_agent", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )


def wait_for(pred, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.001)


def idle(server: ThreadedDevServer, token: str, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        daemon = start_daemon(server.url, token, home, "30s")
        baseline = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import httpx, structlog, tenacity, watchfiles, time; time.sleep(1e6)",
            ]
        )
        try:
            wait_for((home / ".config/secret-agent/secrets.env").exists)
            time.sleep(1.0)  # let start-up settle before the window opens
            server.request_log.clear()
            d0, b0 = proc_stats(daemon.pid), proc_stats(baseline.pid)
            time.sleep(seconds)
            d1, b1 = proc_stats(daemon.pid), proc_stats(baseline.pid)
            polls = [e for e in _events(home) if e.get("event") == "sync_done"]
            requests = len(server.request_log)
        finally:
            for p in (daemon, baseline):
                p.terminate()
                p.wait()
    return {
        "daemon_cpu": d1[0] - d0[0],
        "base_cpu": b1[0] - b0[0],
        "daemon_rss": d1[1],
        "base_rss": b1[1],
        "requests": requests,
        "polls_total": len(polls),
    }


def _events(home: Path) -> list[dict[str, object]]:
    out = []
    for line in (home / "daemon.log").read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def steady_requests(server: ThreadedDevServer, token: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        daemon = start_daemon(server.url, token, home, "200ms")
        try:
            wait_for((home / ".config/secret-agent/secrets.env").exists)
            time.sleep(0.5)
            before = sum(1 for e in _events(home) if e.get("event") == "sync_done")
            server.request_log.clear()
            time.sleep(3.0)
            after = sum(1 for e in _events(home) if e.get("event") == "sync_done")
            requests = len(server.request_log)
        finally:
            daemon.terminate()
            daemon.wait()
    return requests / max(1, after - before)


def latency(
    server: ThreadedDevServer, store: Store, token: str, rotations: int, naive: bool
) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        target = home / "secrets/s0000/token"
        stop = threading.Event()
        daemon = None
        naive_thread = threading.Thread(target=_naive_loop, args=(server.url, token, home, stop))
        if naive:
            naive_thread.start()
        else:
            daemon = start_daemon(server.url, token, home, "1s")
        try:
            wait_for(target.exists)
            out = []
            rng = random.Random(7)  # the same arrival times for both runs
            for i in range(rotations):
                # Rotations arrive at random points of the poll cycle, as in real life;
                # rotating right after each detection would always wait a whole interval.
                time.sleep(rng.uniform(0, 1.0))
                value = f"rotated-{i:04d}-" + "x" * 40
                t0 = time.monotonic()
                store.update_secret(USER, "secret-0000", value=value)
                wait_for(lambda v=value: _read(target) == v, 10)
                out.append(time.monotonic() - t0)
            return out
        finally:
            stop.set()
            if naive:
                naive_thread.join()
            if daemon is not None:
                daemon.terminate()
                daemon.wait()


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _naive_loop(url: str, token: str, home: Path, stop: threading.Event) -> None:
    with CoderClient(url=url, token=Secret(token)) as client:
        while not stop.is_set():
            for meta in client.list_secrets():
                _, value = client.get_secret(meta.name)
                path = home / meta.file_path.removeprefix("~/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(value.reveal() if value else "")
            stop.wait(1.0)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--rotations", type=int, default=50)
    args = parser.parse_args()
    store, token = seeded_store(50)
    with ThreadedDevServer(store, inline_values=True) as server:
        rest = idle(server, token, args.idle_seconds)
        per_poll = steady_requests(server, token)
        ours = latency(server, store, token, args.rotations, naive=False)
        base = latency(server, store, token, args.rotations, naive=True)
    window = args.idle_seconds
    print(f"{'metric':<38} {'daemon':>10} {'baseline':>10} {'ratio':>7}")
    print("-" * 68)
    print(
        f"{'idle RSS (MiB), 50 secrets':<38} {rest['daemon_rss'] / 1024:>10.1f} "
        f"{rest['base_rss'] / 1024:>10.1f} {rest['daemon_rss'] / rest['base_rss']:>7.2f}"
    )
    print(
        f"{f'idle CPU (% of a core over {window:.0f} s)':<38} "
        f"{100 * rest['daemon_cpu'] / window:>10.3f} {100 * rest['base_cpu'] / window:>10.3f}"
        f" {'-':>7}"
    )
    print(
        f"{'requests per poll, steady state':<38} {per_poll:>10.2f} {51:>10} {per_poll / 51:>7.3f}"
    )
    for p in (50, 99):
        a, b = pct(ours, p), pct(base, p)
        print(f"{f'propagation p{p} (s), interval 1s':<38} {a:>10.3f} {b:>10.3f} {a / b:>7.2f}")
    print(
        f"\nidle window: {rest['requests']:.0f} requests over {window:.0f} s at interval 30s;"
        " baseline for requests is the naive loop's list + 50 gets"
    )


if __name__ == "__main__":
    main()
