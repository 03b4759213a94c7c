"""Backoff delays (properties) and Retry-After parsing (both forms, garbage, cap)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrapy_resilience.retry.backoff import compute_delay, parse_retry_after, raw_delay, retry_delay

NOW = 1_800_000_000.0


@attrs.frozen
class Policy:
    base_delay: float
    multiplier: float
    max_delay: float
    jitter_factor: float


policies = st.builds(
    Policy,
    base_delay=st.floats(0.1, 60),
    multiplier=st.floats(1.0, 10.0),
    max_delay=st.floats(0.1, 86400),
    jitter_factor=st.floats(0.0, 1.0),
)
attempts = st.integers(1, 200)


@given(policies, attempts, st.integers(0, 2**32))
def test_delay_within_jitter_range_and_cap(policy: Policy, attempt: int, seed: int) -> None:
    """The delay lies in [d(1-j), d] with d the capped exponential, so never above max_delay."""
    d = min(policy.max_delay, policy.base_delay * policy.multiplier ** (attempt - 1)) if attempt < 100 else None
    delay = compute_delay(attempt, policy, random.Random(seed))
    expected = raw_delay(attempt, policy)
    if d is not None:
        assert expected == pytest.approx(d)
    assert expected * (1 - policy.jitter_factor) - 1e-9 <= delay <= expected + 1e-9
    assert 0 <= delay <= policy.max_delay + 1e-9


@given(policies, attempts)
def test_raw_delay_is_monotone_and_capped(policy: Policy, attempt: int) -> None:
    """Before jitter, each delay is at least the previous one and never above the cap."""
    assert raw_delay(attempt, policy) <= raw_delay(attempt + 1, policy) <= policy.max_delay


@given(policies, attempts, st.integers(0, 2**32))
def test_seeded_random_is_deterministic(policy: Policy, attempt: int, seed: int) -> None:
    """Two runs with the same seed draw the same delay."""
    assert compute_delay(attempt, policy, random.Random(seed)) == compute_delay(attempt, policy, random.Random(seed))


def test_no_jitter_is_exact() -> None:
    """With jitter 0 the schedule is base·multiplier^(n-1), capped."""
    policy = Policy(base_delay=1.0, multiplier=2.0, max_delay=10.0, jitter_factor=0.0)
    rng = random.Random(0)
    assert [compute_delay(n, policy, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_huge_attempts_do_not_overflow() -> None:
    """An exponent too big for a float gives the cap, not an OverflowError."""
    policy = Policy(base_delay=60.0, multiplier=10.0, max_delay=300.0, jitter_factor=0.0)
    assert compute_delay(10_000, policy, random.Random(0)) == 300.0


@pytest.mark.parametrize(("value", "expected"), [("120", 120.0), (" 7 ", 7.0), (b"30", 30.0), ("1", 1.0)])
def test_retry_after_delta_seconds(value: str | bytes, expected: float) -> None:
    """Delta-seconds give that many seconds."""
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_http_date() -> None:
    """An HTTP-date in the future gives the seconds until it."""
    when = datetime.fromtimestamp(NOW, tz=timezone.utc) + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(90.0)


def test_retry_after_naive_date_is_utc() -> None:
    """A date without a zone is read as UTC."""
    when = datetime.fromtimestamp(NOW, tz=timezone.utc) + timedelta(seconds=45)
    assert parse_retry_after(when.strftime("%a, %d %b %Y %H:%M:%S"), NOW) == pytest.approx(45.0)


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "-5", "1.5", "0", "12abc", "Fri, 31 Dec 1999 23:59:59 GMT", "Mon, 99 Foo 2024 99:99:99 GMT"],
)
def test_retry_after_garbage_negative_zero_past(value: str | None) -> None:
    """Garbage, negative, zero and past values fall back to backoff (None)."""
    assert parse_retry_after(value, NOW) is None


@given(st.text() | st.binary())
def test_retry_after_never_raises(value: str | bytes) -> None:
    """Any header value parses to None or a positive number of seconds."""
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or seconds > 0


def test_retry_after_is_a_minimum_and_capped() -> None:
    """Retry-After raises a short backoff, never lowers a long one, and is capped."""
    policy = Policy(base_delay=1.0, multiplier=2.0, max_delay=60.0, jitter_factor=0.0)
    rng = random.Random(0)
    assert retry_delay(1, policy, rng, 30.0, 300.0) == 30.0
    assert retry_delay(6, policy, rng, 5.0, 300.0) == 32.0
    assert retry_delay(1, policy, rng, 3600.0, 300.0) == 300.0
    assert retry_delay(1, policy, rng, None, 300.0) == 1.0


@given(policies, attempts, st.floats(0.001, 10**6), st.floats(0, 86400))
def test_retry_after_never_undercut(policy: Policy, attempt: int, retry_after: float, cap: float) -> None:
    """The delay is never shorter than the capped Retry-After."""
    assert retry_delay(attempt, policy, random.Random(1), retry_after, cap) >= min(retry_after, cap)
