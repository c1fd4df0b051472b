"""Benchmark the agent value source against the dev server's agent RPC on loopback.

Two questions, 50 secrets (Coder's per-user cap), each with a file and an env var:

1. GetManifest round trips per poll at steady state, counted by the dev server, for a
   pass with a session token and `values.source = "agent"` (goal: zero when the REST
   list shows no change; one on a poll after a rotation) and in agent-only mode (no
   session token: one per poll, by design, as there is no cheap change detection).
2. Wall time of one GetManifest carrying the 50 secrets: on the reused connection (a
   poll's real cost), and cold (new client: buildinfo + WebSocket upgrade + call).

The baseline, in the same process against the same server, is one REST list request
(what a steady-state poll costs anyway); the 50 gets that inline values would need
are shown too. Ratios are time / list time.

Run: python bench/bench_agent.py  (needs the [devserver] extra)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from seed import USER, seeded_store

from secret_agent import logs
from secret_agent.coder import AgentClient, CoderClient
from secret_agent.config import load_config
from secret_agent.devserver import Store, ThreadedDevServer
from secret_agent.passes import make_client, run_pass
from secret_agent.redact import Secret

SECRETS = 50
WARM_REPEATS = 300
COLD_REPEATS = 30
POLLS = 10


def seeded() -> tuple[Store, str, str]:
    store, token = seeded_store(SECRETS)
    return store, token, store.issue_agent_token(USER)


def median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def calls_per_poll(server: ThreadedDevServer, env: dict[str, str], home: Path) -> list[int]:
    """GetManifest calls made by each of POLLS passes of one long-lived client holder;
    a secret is rotated before the last poll."""
    config = load_config(path=None, env={"HOME": str(home), **env})
    counts = []
    with make_client(config) as clients:
        for i in range(POLLS):
            if i == POLLS - 1:
                server.store.update_secret(USER, "secret-0007", value="rotated-" + "y" * 100)
            before = server.agent_rpc.get_manifest_calls
            report = run_pass(config, clients)
            assert report.ok
            counts.append(server.agent_rpc.get_manifest_calls - before)
    return counts


def timings(
    server: ThreadedDevServer, store: Store, token: str, agent_token: str
) -> dict[str, float]:
    """Median seconds of the baseline list, 50 inline gets, and GetManifest warm and cold."""
    out = {}
    with CoderClient(url=server.url, token=Secret(token)) as rest:
        out["list"] = median_s(rest.list_secrets, WARM_REPEATS)
    with (
        ThreadedDevServer(store, inline_values=True) as inline,
        CoderClient(url=inline.url, token=Secret(token)) as rest,
    ):
        names = [m.name for m in rest.list_secrets()]
        out["gets"] = median_s(lambda: [rest.get_secret(n) for n in names], COLD_REPEATS)
    with AgentClient(url=server.url, token=Secret(agent_token)) as agent:
        assert len(agent.get_manifest_secrets()) == SECRETS
        out["warm"] = median_s(agent.get_manifest_secrets, WARM_REPEATS)
        out["connections"] = agent.connections

    def cold() -> None:
        with AgentClient(url=server.url, token=Secret(agent_token)) as fresh:
            fresh.get_manifest_secrets()

    out["cold"] = median_s(cold, COLD_REPEATS)
    return out


def main() -> None:
    logs.configure(level="error")  # connect/disconnect events would drown the table
    store, token, agent_token = seeded()
    with ThreadedDevServer(store) as server, tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "agent.toml"
        cfg.write_text('[values]\nsource = "agent"\n[log]\nlevel = "error"\n')
        base = {
            "CODER_AGENT_URL": server.url,
            "CODER_AGENT_TOKEN": agent_token,
            "SECRET_AGENT_CONFIG": str(cfg),
        }
        session = {**base, "CODER_URL": server.url, "CODER_SESSION_TOKEN": token}
        with_session = calls_per_poll(server, session, Path(tmp) / "a")
        agent_only = calls_per_poll(server, base, Path(tmp) / "b")
        t = timings(server, store, token, agent_token)

    print(f"GetManifest round trips per poll ({POLLS} polls, a rotation before the last):")
    print(f"  session token, source=agent : {with_session}")
    print(f"  agent-only (no session)     : {agent_only}")
    steady = with_session[1:-1]
    print(f"  steady state with session token: {sum(steady)} calls in {len(steady)} polls")
    print()
    head = f"{'operation (50 secrets, loopback)':<44} {'median ms':>10} {'x list':>7}"
    print(head)
    print("-" * len(head))
    for label, key in (
        ("REST list (baseline: every poll pays it)", "list"),
        ("GetManifest, reused connection", "warm"),
        ("GetManifest, cold (buildinfo+upgrade+call)", "cold"),
        ("50 REST gets (inline values, dev server)", "gets"),
    ):
        print(f"{label:<44} {t[key] * 1000:>10.3f} {t[key] / t['list']:>7.2f}")
    print(f"\nWebSockets opened for {WARM_REPEATS + 1} warm calls: {t['connections']:.0f}")


if __name__ == "__main__":
    main()
