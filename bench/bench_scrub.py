"""Benchmark log scrubbing with large values registered.

Issue 8, item 10: with 40 values of 2 MiB known, logging at info took 39.8 s (41 s of
it in `repr()` of every value on every scrub). This measures, in one process:
- registering the values (first time, and again as every pass does);
- the cost of logging N events through the real chain (`logs.configure`, JSON) with
  the values registered, against a baseline of the same logging with no value known;
- the time to scrub one line of 1 KiB and of 1 MiB (time per KiB shows linearity);
- for the choice of `redact.SEARCH_LIMIT`: a 1 KiB line against k patterns, searched
  one by one or through the index.
Values are random base64: 52 tokens of 40 characters (the usual: 50 secrets and two
tokens), 40 of 2 MiB on one line, or 40 of 2 MiB PEM-like (76-character lines, ~27,600
per value, which makes every line a pattern of its own).

Run: python bench/bench_scrub.py [--events 2000] [--repeat 3] [--no-multiline]
Against another copy of the code: PYTHONPATH=/tmp/old/src python bench/bench_scrub.py
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import resource
import time
from collections.abc import Callable
from functools import partial

import structlog

from secret_agent import logs, redact
from secret_agent.redact import known_values

VALUES = 40
VALUE_BYTES = 2 << 20


def make_values(kind: str) -> list[str]:
    if kind == "tokens":
        return [base64.b64encode(os.urandom(30)).decode() for _ in range(52)]
    raw = [os.urandom(VALUE_BYTES * 3 // 4) for _ in range(VALUES)]
    if kind == "pem":
        return [base64.encodebytes(r).decode() for r in raw]
    return [base64.b64encode(r).decode() for r in raw]


def timed(fn: Callable[[], object], *, budget: float = 0.0) -> float:
    """Seconds per call of `fn`: once, or as often as fits in `budget` seconds."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    repeat = int(budget / once) if once < budget else 0
    if not repeat:
        return once
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def log_events(n: int) -> float:
    """Seconds to log `n` ordinary events (three shapes the daemon logs) at info."""
    out = io.StringIO()
    logs.configure(level="info", fmt="json", stream=out)
    log = structlog.get_logger("bench")
    error = "cannot write ~/.config/app/credentials: [Errno 13] Permission denied " * 2
    t0 = time.perf_counter()
    for i in range(n):
        if i % 3 == 0:
            log.info(
                "file_written", secret=f"s-{i}", path=f"~/s/{i}/token", short_sha="0123456789ab"
            )
        elif i % 3 == 1:
            log.info("sync_done", secrets=40, requests=1, bytes_written=0, unchanged=40)
        else:
            log.error("file_failed", secret=f"s-{i}", path=f"~/s/{i}", error=error)
    return time.perf_counter() - t0


def text_of(size: int, fragment: str) -> str:
    """Log-like text of `size` characters with `fragment` (a value's line) in the middle."""
    words = "sync_done secrets=40 path=~/.config/app/token short_sha=0123456789ab "
    body = (words * (size // len(words) + 1))[: size - len(fragment)]
    half = len(body) // 2
    return body[:half] + fragment + body[half:]


def scrub_row(label: str, fragment: str) -> str:
    cells = []
    for size in (1 << 10, 1 << 20):
        text = text_of(size, fragment)
        seconds = timed(partial(redact.scrub, text), budget=0.3)
        cells.append(f"{seconds * 1e6:>12.1f} {seconds * 1e6 / (size >> 10):>9.2f}")
    return f"{label:<28} " + " ".join(cells)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="best of, for the event rows")
    parser.add_argument("--no-multiline", action="store_true")
    args = parser.parse_args()
    n = args.events

    def best_log_events() -> float:
        return min(log_events(n) for _ in range(args.repeat))

    cases = [("52 tokens of 40 chars", "tokens"), ("40 x 2 MiB, one line", "line")]
    if not args.no_multiline:
        cases.append(("40 x 2 MiB, PEM-like", "pem"))

    known_values.clear()
    log_events(200)  # warm up: the first run pays for imports and caches
    rows = []
    scrub_rows = [scrub_row("none", "")]
    for label, kind in cases:
        values = make_values(kind)
        known_values.clear()
        first = timed(partial(known_values.add, values))
        # Each pass decodes its values anew: equal strings, new objects (hashed again).
        again = timed(partial(known_values.add, [(v + ".")[:-1] for v in values]))
        logged = best_log_events()
        # A line holding a value: a token, or a PEM line (a 2 MiB value fits in neither).
        fragment = {"tokens": values[7], "pem": values[7][7700:7776]}.get(kind, "")
        scrub_rows.append(scrub_row(label, fragment))
        rss = peak_rss_mib()
        known_values.clear()
        # The baseline: the same logging, no value known, measured next to each case.
        rows.append((label, first, again, logged, best_log_events(), rss))
    known_values.clear()

    head = (
        f"{'values registered':<28} {'add s':>8} {'re-add s':>9} "
        f"{f'{n} events s':>13} {'baseline s':>10} {'ratio':>6} {'per event us':>13} "
        f"{'peak RSS MiB':>13}"
    )
    print(head)
    print("-" * len(head))
    for label, first, again, logged, baseline, rss in rows:
        print(
            f"{label:<28} {first:>8.3f} {again:>9.3f} {logged:>13.3f} {baseline:>10.3f} "
            f"{logged / baseline:>6.2f} {logged / n * 1e6:>13.1f} {rss:>13.0f}"
        )
    print()
    head = f"{'scrub one line, values':<28} " + " ".join(
        f"{f'{size} us':>12} {'us/KiB':>9}" for size in ("1 KiB", "1 MiB")
    )
    print(head)
    print("-" * len(head))
    for row in scrub_rows:
        print(row)
    if hasattr(redact, "SEARCH_LIMIT"):
        print()
        search_limit_table()


def search_limit_table() -> None:
    """A 1 KiB line against k long patterns: one C search each, or the index."""
    head = f"{'patterns':>8} {'searched us':>12} {'indexed us':>11}"
    print(f"SEARCH_LIMIT = {redact.SEARCH_LIMIT}")
    print(head)
    print("-" * len(head))
    text = text_of(1 << 10, "")
    limit = redact.SEARCH_LIMIT
    for k in (16, 64, 256, 1024, 4096):
        values = [base64.b64encode(os.urandom(30)).decode() for _ in range(k)]
        cells = []
        for forced in (1 << 30, 0):
            redact.SEARCH_LIMIT = forced  # type: ignore[misc]
            reg = redact.Registry()
            reg.add(values)
            cells.append(timed(partial(reg.scrub, text), budget=0.1) * 1e6)
        redact.SEARCH_LIMIT = limit  # type: ignore[misc]
        print(f"{k:>8} {cells[0]:>12.1f} {cells[1]:>11.1f}")


if __name__ == "__main__":
    main()
