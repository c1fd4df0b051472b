"""schedule: poll jitter, exponential backoff, the non-retryable wait and Retry-After.

Randomness comes in as an `rng`: `random.Random(seed)` for many ordinary draws, and
`EndRng`, whose `uniform(a, b)` returns exactly `a` or exactly `b`, to pin both ends of
every interval the module asks for.
"""

from __future__ import annotations

import math
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secret_agent.schedule import (
    RETRY_AFTER_CAP,
    Policy,
    backoff_ceiling,
    backoff_delay,
    poll_delay,
)

# Values exactly representable in binary, so end-point results compare with `==`.
DEFAULT = Policy(interval=30.0, jitter=0.25, backoff_initial=1.0, backoff_max=60.0)
SEEDS = range(20)
DRAWS = 200


class EndRng:
    """An rng whose `uniform(a, b)` is always the low end `a` or always the high end `b`."""

    def __init__(self, end: str) -> None:
        self.end = end
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a if self.end == "low" else b


def _within(value: float, low: float, high: float) -> bool:
    """`low <= value <= high`, allowing for one rounding step at either end."""
    slack = 1e-12 * max(1.0, abs(low), abs(high))
    return low - slack <= value <= high + slack


# -- poll_delay --------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_poll_delay_stays_within_jitter_band(seed: int) -> None:
    """Every poll waits interval +/- jitter x interval, for many seeded draws."""
    rng = random.Random(seed)
    delays = [poll_delay(DEFAULT, rng) for _ in range(DRAWS)]
    assert all(22.5 <= d <= 37.5 for d in delays)
    # The jitter is real: a fleet does not poll in lockstep.
    assert len(set(delays)) > DRAWS // 2
    assert min(delays) < 30.0 < max(delays)


@pytest.mark.parametrize(
    ("end", "expected"),
    [pytest.param("low", 22.5, id="low-end"), pytest.param("high", 37.5, id="high-end")],
)
def test_poll_delay_reaches_each_end_of_the_band(end: str, expected: float) -> None:
    """The band is exactly interval - jitter x interval to interval + jitter x interval."""
    rng = EndRng(end)
    assert poll_delay(DEFAULT, rng) == expected
    assert rng.calls == [(22.5, 37.5)]


@pytest.mark.parametrize("end", ["low", "high"])
def test_poll_delay_without_jitter_is_the_interval(end: str) -> None:
    """With jitter 0 every poll waits exactly the interval."""
    policy = Policy(interval=30.0, jitter=0.0, backoff_initial=1.0, backoff_max=60.0)
    assert poll_delay(policy, EndRng(end)) == 30.0


def test_poll_delay_is_never_negative() -> None:
    """A jitter wider than the interval still never yields a negative wait."""
    policy = Policy(interval=10.0, jitter=1.5, backoff_initial=1.0, backoff_max=60.0)
    assert poll_delay(policy, EndRng("low")) == 0.0
    assert poll_delay(policy, EndRng("high")) == 25.0


# -- backoff_ceiling ---------------------------------------------------------

CEILINGS = [
    pytest.param(1.0, 60.0, 1, 1.0, id="first-failure-is-initial"),
    pytest.param(1.0, 60.0, 2, 2.0, id="second-doubles"),
    pytest.param(1.0, 60.0, 3, 4.0, id="third-doubles-again"),
    pytest.param(1.0, 60.0, 6, 32.0, id="sixth-below-cap"),
    pytest.param(1.0, 60.0, 7, 60.0, id="seventh-capped"),
    pytest.param(1.0, 60.0, 8, 60.0, id="stays-capped"),
    pytest.param(0.5, 3.0, 3, 2.0, id="half-second-initial"),
    pytest.param(0.5, 3.0, 4, 3.0, id="small-cap"),
    pytest.param(5.0, 5.0, 1, 5.0, id="initial-equals-max"),
    pytest.param(1.0, 60.0, 0, 1.0, id="zero-failures-counts-as-first"),
    pytest.param(1.0, 60.0, -3, 1.0, id="negative-failures-counts-as-first"),
]


@pytest.mark.parametrize(("initial", "cap", "failures", "expected"), CEILINGS)
def test_backoff_ceiling_doubles_up_to_the_cap(
    initial: float, cap: float, failures: int, expected: float
) -> None:
    """The ceiling is initial x 2^(n-1), capped at backoff_max."""
    policy = Policy(interval=30.0, jitter=0.1, backoff_initial=initial, backoff_max=cap)
    assert backoff_ceiling(policy, failures) == expected


HUGE_FAILURES = [
    pytest.param(63, id="63"),
    pytest.param(1024, id="1024-beyond-float-exponent"),
    pytest.param(sys.maxsize, id="sys-maxsize"),
    pytest.param(10**100, id="googol"),
]


@pytest.mark.parametrize("failures", HUGE_FAILURES)
def test_huge_failure_counts_do_not_overflow(failures: int) -> None:
    """After any number of failures the ceiling is backoff_max, with no OverflowError."""
    assert backoff_ceiling(DEFAULT, failures) == 60.0
    assert backoff_delay(DEFAULT, failures, rng=EndRng("high")) == 60.0
    assert backoff_delay(DEFAULT, failures, rng=EndRng("low")) == 0.5


def test_huge_initial_does_not_overflow() -> None:
    """An initial so large that doubling reaches infinity still yields backoff_max."""
    policy = Policy(interval=30.0, jitter=0.1, backoff_initial=1e300, backoff_max=1e300)
    assert backoff_ceiling(policy, 10**6) == 1e300
    assert math.isfinite(backoff_delay(policy, 10**6, rng=random.Random(0)))


# -- backoff_delay -----------------------------------------------------------

DELAY_ENDS = [
    # initial, cap, failures, end, expected
    pytest.param(1.0, 60.0, 1, "low", 0.5, id="first-low-is-half-initial"),
    pytest.param(1.0, 60.0, 1, "high", 1.0, id="first-high-is-initial"),
    pytest.param(1.0, 60.0, 4, "low", 0.5, id="fourth-low-still-half-initial"),
    pytest.param(1.0, 60.0, 4, "high", 8.0, id="fourth-high-is-ceiling"),
    pytest.param(1.0, 60.0, 30, "high", 60.0, id="capped-high"),
    pytest.param(4.0, 2.0, 1, "low", 2.0, id="half-initial-above-cap-clamped-low"),
    pytest.param(4.0, 2.0, 1, "high", 2.0, id="half-initial-above-cap-clamped-high"),
]


@pytest.mark.parametrize(("initial", "cap", "failures", "end", "expected"), DELAY_ENDS)
def test_backoff_delay_ends(
    initial: float, cap: float, failures: int, end: str, expected: float
) -> None:
    """A retryable failure waits in [min(initial/2, ceiling), ceiling], reaching both ends."""
    policy = Policy(interval=30.0, jitter=0.1, backoff_initial=initial, backoff_max=cap)
    assert backoff_delay(policy, failures, rng=EndRng(end)) == expected


@pytest.mark.parametrize("seed", SEEDS)
def test_backoff_delay_within_bounds_for_seeded_draws(seed: int) -> None:
    """Seeded draws for failures 1..10 all land in [initial/2, ceiling] and spread out."""
    rng = random.Random(seed)
    for failures in range(1, 11):
        ceiling = min(60.0, 2.0 ** (failures - 1))
        floor = min(0.5, ceiling)
        delays = [backoff_delay(DEFAULT, failures, rng=rng) for _ in range(20)]
        assert all(floor <= d <= ceiling for d in delays), (failures, delays)
        assert len(set(delays)) > 10


@pytest.mark.parametrize("failures", [1, 2, 7, 1000])
@pytest.mark.parametrize("end", ["low", "high"])
def test_non_retryable_waits_exactly_backoff_max(failures: int, end: str) -> None:
    """An error waiting cannot fix waits the full backoff_max, whatever the count or rng."""
    assert backoff_delay(DEFAULT, failures, retryable=False, rng=EndRng(end)) == 60.0


RETRY_AFTER = [
    # initial, cap, retryable, retry_after, end, expected
    pytest.param(1.0, 1.0, True, 7.0, "high", 7.0, id="floor-above-1s-ceiling"),
    pytest.param(1.0, 1.0, True, 7.0, "low", 7.0, id="floor-above-low-draw"),
    pytest.param(1.0, 60.0, True, 0.1, "high", 1.0, id="below-draw-is-ignored"),
    pytest.param(1.0, 60.0, True, 0.0, "low", 0.5, id="zero-is-ignored"),
    pytest.param(1.0, 60.0, False, 90.0, "low", 90.0, id="non-retryable-longer"),
    pytest.param(1.0, 60.0, False, 5.0, "low", 60.0, id="non-retryable-shorter"),
    pytest.param(1.0, 60.0, True, 1e9, "low", RETRY_AFTER_CAP, id="capped"),
    pytest.param(1.0, 60.0, True, math.inf, "low", RETRY_AFTER_CAP, id="infinite-capped"),
    pytest.param(1.0, 60.0, False, 1e9, "high", RETRY_AFTER_CAP, id="non-retryable-capped"),
    pytest.param(1.0, 7200.0, False, 1e9, "low", 7200.0, id="cap-never-shortens-backoff"),
]


@pytest.mark.parametrize(
    ("initial", "cap", "retryable", "retry_after", "end", "expected"), RETRY_AFTER
)
def test_retry_after_is_a_capped_floor(
    initial: float, cap: float, retryable: bool, retry_after: float, end: str, expected: float
) -> None:
    """The wait is never shorter than Retry-After, which counts for at most RETRY_AFTER_CAP."""
    policy = Policy(interval=30.0, jitter=0.1, backoff_initial=initial, backoff_max=cap)
    delay = backoff_delay(policy, 1, retryable=retryable, retry_after=retry_after, rng=EndRng(end))
    assert delay == expected


# -- properties --------------------------------------------------------------

durations = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Policies `config` accepts: positive durations, initial <= max, jitter in [0, 1)."""
    a, b = draw(durations), draw(durations)
    return Policy(
        interval=draw(durations),
        jitter=draw(st.floats(min_value=0.0, max_value=1.0, exclude_max=True)),
        backoff_initial=min(a, b),
        backoff_max=max(a, b),
    )


rngs = st.one_of(
    st.randoms(use_true_random=False),
    st.sampled_from(["low", "high"]).map(EndRng),
)
failure_counts = st.one_of(st.integers(1, 80), st.integers(1, 10**30))
retry_afters = st.none() | st.floats(min_value=0.0, max_value=1e12, allow_nan=False)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(policy=policies(), rng=rngs)
def test_poll_delay_bounds_property(policy: Policy, rng: random.Random | EndRng) -> None:
    """For any accepted policy a poll waits within interval +/- jitter x interval."""
    spread = policy.interval * policy.jitter
    delay = poll_delay(policy, rng)
    assert _within(delay, policy.interval - spread, policy.interval + spread)
    assert delay >= 0.0


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    policy=policies(),
    failures=failure_counts,
    retryable=st.booleans(),
    retry_after=retry_afters,
    rng=rngs,
)
def test_backoff_delay_bounds_property(
    policy: Policy,
    failures: int,
    retryable: bool,
    retry_after: float | None,
    rng: random.Random | EndRng,
) -> None:
    """Any backoff lies in its band, is lifted to a capped Retry-After, and stays finite."""
    ceiling = backoff_ceiling(policy, failures)
    assert policy.backoff_initial <= ceiling <= policy.backoff_max
    assert backoff_ceiling(policy, failures + 1) == min(policy.backoff_max, 2 * ceiling)

    delay = backoff_delay(policy, failures, retryable=retryable, retry_after=retry_after, rng=rng)
    assert math.isfinite(delay)
    if retryable:
        low, high = min(policy.backoff_initial / 2, ceiling), ceiling
    else:
        low = high = policy.backoff_max
    floor = 0.0 if retry_after is None else min(retry_after, RETRY_AFTER_CAP)
    assert _within(delay, max(low, floor), max(high, floor))
    assert delay >= floor
    assert delay > 0.0  # a failing server is never hammered


class TestParseRetryAfter:
    NOW = __import__("datetime").datetime(2026, 1, 1, 12, 0, 0, tzinfo=__import__("datetime").UTC)

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            pytest.param("7", 7.0, id="seconds"),
            pytest.param(" 120 ", 120.0, id="padded"),
            pytest.param("Thu, 01 Jan 2026 12:00:30 GMT", 30.0, id="http-date"),
            pytest.param("Thu, 01 Jan 2026 11:00:00 GMT", 0.0, id="date-in-the-past"),
            pytest.param("", None, id="empty"),
            pytest.param(None, None, id="absent"),
            pytest.param("soon", None, id="garbage"),
            pytest.param("\u00b2", None, id="non-ascii-digit"),
        ],
    )
    def test_forms(self, header: str | None, expected: float | None) -> None:
        """Delta-seconds and HTTP dates both give seconds; anything else is None."""
        from secret_agent.schedule import parse_retry_after

        assert parse_retry_after(header, now=self.NOW) == expected
