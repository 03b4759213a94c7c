"""Backoff delays and ``Retry-After`` parsing: pure functions, no clock of their own.

The delay before retry ``n`` (``n`` = 1 for the first retry) is

    d = min(max_delay, base_delay * multiplier ** (n - 1))

jittered uniformly in ``[d * (1 - jitter), d]``: jitter only ever shortens the
delay, so ``max_delay`` stays a true cap, and ``jitter = 1`` is AWS's "full
jitter", the variant that does the least total work under contention. The
random source is passed in (a ``random.Random``) so that a seeded run is
reproducible, which the module-global ``random`` of the usual retry libraries
does not allow.

A server's ``Retry-After`` is a *minimum*: the delay is
``max(backoff, min(retry_after, RESILIENCE_RETRY_AFTER_MAX))``.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from datetime import timezone
from typing import Protocol


class BackoffPolicy(Protocol):
    """What ``compute_delay`` reads: the backoff fields of the data model's RetryPolicy."""

    @property
    def base_delay(self) -> float: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def max_delay(self) -> float: ...
    @property
    def jitter_factor(self) -> float: ...


_DELTA_SECONDS = re.compile(r"^\s*(\d+)\s*$")


def raw_delay(attempt: int, policy: BackoffPolicy) -> float:
    """The capped exponential delay before retry ``attempt``, before jitter."""
    exponent = max(attempt, 1) - 1
    try:
        delay = policy.base_delay * policy.multiplier**exponent
    except OverflowError:  # multiplier ** 1000 and the like: the cap applies
        return policy.max_delay
    if math.isnan(delay) or delay > policy.max_delay:
        return policy.max_delay
    return delay


def compute_delay(attempt: int, policy: BackoffPolicy, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (1-based), jittered with ``rng``."""
    delay = raw_delay(attempt, policy)
    jitter = min(max(policy.jitter_factor, 0.0), 1.0)
    if jitter == 0.0:
        return delay
    return rng.uniform(delay * (1.0 - jitter), delay)


def parse_retry_after(value: str | bytes | None, now: float) -> float | None:
    """Seconds from ``now`` (epoch) that a ``Retry-After`` value asks to wait.

    Both RFC 9110 forms are accepted: delta-seconds (``"120"``) and an
    HTTP-date (``"Fri, 31 Dec 1999 23:59:59 GMT"``; a date without a zone is
    taken as UTC). ``None`` for a missing, unparseable or negative value and
    for a date that is not in the future, so that the caller falls back to
    its own backoff.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    match = _DELTA_SECONDS.match(value)
    if match:
        seconds = float(match.group(1))
        return seconds if seconds > 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        seconds = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    return seconds if seconds > 0 else None


def retry_delay(
    attempt: int, policy: BackoffPolicy, rng: random.Random, retry_after: float | None, retry_after_max: float
) -> float:
    """The delay before a retry: the backoff, raised to ``Retry-After`` (capped) if given."""
    delay = compute_delay(attempt, policy, rng)
    if retry_after is None:
        return delay
    return max(delay, min(retry_after, retry_after_max))
