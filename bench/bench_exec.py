"""Benchmark `secret-agent exec -- true` on the fast path.

A daemon runs against the dev server with 50 secrets, so `exec` takes its values from
the daemon's fresh local state: no network. Its median wall time is compared, in the
same run, with `python3 -c pass` (the interpreter's floor) and python-dotenv's
`dotenv run -- true` reading an env file with the same 50 variables (the goal: faster
than python-dotenv). Also shown: the slow path (`exec --fresh`, one sync pass first).

Run: python bench/bench_exec.py [--runs 30]   (needs the [test] extra for dotenv's CLI)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seed import seeded_store

from secret_agent.devserver import ThreadedDevServer


def median_time(argv: list[str], env: dict[str, str], runs: int, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    store, token = seeded_store(50)
    dotenv_cli = shutil.which("dotenv") or str(Path(sys.executable).parent / "dotenv")
    with (
        ThreadedDevServer(store, inline_values=True) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        home = Path(tmp)
        cfg = home / "config.toml"
        cfg.write_text('[env_file]\nformat = "dotenv"\n')
        env = {
            "HOME": str(home),
            "CODER_URL": server.url,
            "CODER_SESSION_TOKEN": token,
            "SECRET_AGENT_CONFIG": str(cfg),
            "PATH": os.environ.get("PATH", ""),
        }
        daemon = subprocess.Popen(
            [sys.executable, "-m", "secret_agent", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        status = home / ".local/state/secret-agent/status.json"
        try:
            deadline = time.monotonic() + 30
            while '"synced"' not in (status.read_text() if status.exists() else ""):
                if time.monotonic() > deadline:
                    raise SystemExit("daemon never synced")
                time.sleep(0.05)
            env_file = home / ".config/secret-agent/secrets.env"
            server.request_log.clear()
            agent_cli = str(Path(sys.executable).parent / "secret-agent")
            exe = [agent_cli, "exec", "--", "true"]
            fast = median_time(exe, env, runs, home)
            fast_requests = len(server.request_log)
            floor = median_time([sys.executable, "-c", "pass"], env, runs, home)
            dotenv = median_time(
                [dotenv_cli, "-f", str(env_file), "run", "--", "true"], env, runs, home
            )
            slow = median_time(
                [sys.executable, "-m", "secret_agent", "exec", "--fresh", "--", "true"],
                env,
                max(5, runs // 3),
                home,
            )
        finally:
            daemon.terminate()
            daemon.wait()
    print(f"{'command (median of runs)':<44} {'seconds':>8} {'vs dotenv':>10}")
    print("-" * 64)
    for label, value in (
        ("python3 -c pass (interpreter floor)", floor),
        ("dotenv run -- true (python-dotenv CLI)", dotenv),
        ("secret-agent exec -- true (fast path)", fast),
        ("secret-agent exec --fresh -- true (fetch)", slow),
    ):
        print(f"{label:<44} {value:>8.3f} {value / dotenv:>10.2f}")
    print(f"\nrequests made by {runs} fast-path runs: {fast_requests}")


if __name__ == "__main__":
    main()
