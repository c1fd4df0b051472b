"""When to try next: the poll interval with jitter, and the backoff after failures.

Pure: randomness comes in as an `rng`, no clock is read and nothing sleeps, so every
delay is a number a test can check. The daemon turns these numbers into waits.

- A poll waits `interval` +/- `jitter` x `interval` (uniform), so a fleet of
  workspaces started together does not poll in lockstep.
- After the n-th consecutive failure (n = 1, 2, ...) the wait is "full jitter"
  exponential backoff: uniform in [0, min(backoff_max, backoff_initial x 2^(n-1))],
  never below `backoff_initial / 2` so a failing server is not hammered.
- A server's `Retry-After` is a floor: the wait is never shorter than what it asked
  (capped at `RETRY_AFTER_CAP`, so a broken header cannot park the daemon for days).
- An error that waiting cannot fix (401, 403, a bad config on the server side) waits
  the full `backoff_max`: the daemon never gives up, but it does not spin either.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Protocol

RETRY_AFTER_CAP: Final = 3600.0


class Rng(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """The `sync.*` timing keys, in seconds."""

    interval: float
    jitter: float
    backoff_initial: float
    backoff_max: float


def poll_delay(policy: Policy, rng: Rng = random) -> float:
    """Seconds until the next poll after a good pass."""
    spread = policy.interval * policy.jitter
    return max(0.0, rng.uniform(policy.interval - spread, policy.interval + spread))


def backoff_ceiling(policy: Policy, failures: int) -> float:
    """The longest wait after `failures` consecutive failures: doubles up to the cap."""
    exponent = min(max(failures, 1) - 1, 62)  # 2**62 already dwarfs any cap
    return min(policy.backoff_max, policy.backoff_initial * 2.0**exponent)


def backoff_delay(
    policy: Policy,
    failures: int,
    *,
    retryable: bool = True,
    retry_after: float | None = None,
    rng: Rng = random,
) -> float:
    """Seconds to wait after `failures` consecutive failed passes (failures >= 1)."""
    if not retryable:
        delay = policy.backoff_max
    else:
        ceiling = backoff_ceiling(policy, failures)
        floor = min(policy.backoff_initial / 2, ceiling)
        delay = rng.uniform(floor, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


def parse_retry_after(header: str | None, *, now: datetime) -> float | None:
    """Seconds from a `Retry-After` header, delta-seconds or an HTTP date (RFC 9110);
    None when absent or unreadable. Never negative."""
    if not header:
        return None
    header = header.strip()
    if header.isascii() and header.isdigit():
        return float(header)
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
