"""Benchmark one sync pass against the dev server on loopback.

For 50 secrets (Coder's per-user cap) and 1,000 (the dev server's cap lifted), each
with a file and an env variable, it measures a cold pass (empty workspace) and the
steady-state second pass: wall time, HTTP requests, bytes written, files rewritten.

The baseline, run in the same process against the same server, is what Coder's own
agent does on every manifest fetch: list, get every secret, write every file in place
(truncate + write, no fsync), and rewrite the env file. Ratios are agent / baseline.
Goal at steady state: exactly one request and zero writes.

Run: python bench/bench_sync.py  (needs the [devserver] extra)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from seed import seeded_store

from secret_agent.coder import CoderClient
from secret_agent.config import load_config
from secret_agent.devserver import ThreadedDevServer
from secret_agent.passes import make_client, run_pass
from secret_agent.redact import Secret

REPEATS = 3


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            st = p.stat()
            out[str(p)] = (st.st_ino, st.st_mtime_ns)
    return out


def rewritten(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    return sum(1 for k, v in after.items() if before.get(k) != v)


def agent_pass(url: str, token: str, home: Path) -> Callable[[], int]:
    env = {"HOME": str(home), "CODER_URL": url, "CODER_SESSION_TOKEN": token}
    config = load_config(path=None, env=env)

    def run() -> int:
        with make_client(config) as client:
            report = run_pass(config, client)
        return report.bytes_written

    return run


def baseline_pass(url: str, token: str, home: Path) -> Callable[[], int]:
    """Coder's agent's way: fetch everything, write everything in place."""

    def run() -> int:
        written = 0
        lines = []
        with CoderClient(url=url, token=Secret(token)) as client:
            for meta in client.list_secrets():
                _, value = client.get_secret(meta.name)
                data = value.reveal() if value else ""
                path = home / meta.file_path.removeprefix("~/")
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.write_text(data)
                written += len(data)
                lines.append(f"{meta.env_name}='{data}'\n")
        env = home / ".config/secret-agent/secrets.env"
        env.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(lines)
        env.write_text(text)
        return written + len(text)

    return run


def measure(
    server: ThreadedDevServer, make: Callable[..., Callable[[], int]], token: str, home: Path
) -> dict[str, float]:
    run = make(server.url, token, home)
    server.request_log.clear()
    t0 = time.perf_counter()
    cold_bytes = run()
    cold = time.perf_counter() - t0
    cold_requests = len(server.request_log)
    steady_times = []
    for _ in range(REPEATS):
        before = snapshot(home)
        server.request_log.clear()
        t0 = time.perf_counter()
        steady_bytes = run()
        steady_times.append(time.perf_counter() - t0)
        steady_requests = len(server.request_log)
        files = rewritten(before, snapshot(home))
    return {
        "cold_s": cold,
        "cold_requests": cold_requests,
        "cold_bytes": cold_bytes,
        "steady_s": sorted(steady_times)[len(steady_times) // 2],
        "steady_requests": steady_requests,
        "steady_bytes": steady_bytes,
        "steady_rewrites": files,
    }


def cli_steady(url: str, token: str, home: Path) -> float:
    """Median wall time of `python -m secret_agent run --once` at steady state."""
    env = {
        "HOME": str(home),
        "CODER_URL": url,
        "CODER_SESSION_TOKEN": token,
        "PATH": os.environ.get("PATH", ""),
    }
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "secret_agent", "run", "--once"],
            env=env,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    rows = []
    for n in (50, 1000):
        store, token = seeded_store(n)
        with (
            ThreadedDevServer(store, inline_values=True) as server,
            tempfile.TemporaryDirectory() as a,
            tempfile.TemporaryDirectory() as b,
        ):
            agent = measure(server, agent_pass, token, Path(a))
            base = measure(server, baseline_pass, token, Path(b))
            cli = cli_steady(server.url, token, Path(a))
        rows.append((n, agent, base, cli))

    head = (
        f"{'secrets':>7} {'pass':<7} {'agent s':>9} {'base s':>9} {'ratio':>6} "
        f"{'agent req':>9} {'base req':>8} {'agent bytes':>11} {'base bytes':>10} "
        f"{'rewrites':>8}"
    )
    print(head)
    print("-" * len(head))
    for n, agent, base, _cli in rows:
        for phase in ("cold", "steady"):
            a_s, b_s = agent[f"{phase}_s"], base[f"{phase}_s"]
            rew = (
                f"{agent['steady_rewrites']:.0f}/{base['steady_rewrites']:.0f}"
                if phase == "steady"
                else "-"
            )
            print(
                f"{n:>7} {phase:<7} {a_s:>9.3f} {b_s:>9.3f} {a_s / b_s:>6.2f} "
                f"{agent[f'{phase}_requests']:>9.0f} {base[f'{phase}_requests']:>8.0f} "
                f"{agent[f'{phase}_bytes']:>11.0f} {base[f'{phase}_bytes']:>10.0f} {rew:>8}"
            )
    print()
    for n, _agent, _base, cli in rows:
        print(f"`secret-agent run --once` as a process, steady state, {n} secrets: {cli:.3f} s")


if __name__ == "__main__":
    main()
