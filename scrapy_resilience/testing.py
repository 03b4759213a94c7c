"""Testing mode for users' own test suites: retries without waiting.

Like stamina's ``set_testing``: in testing mode the retry middleware still
classifies failures and retries transient ones, but every backoff and every
``Retry-After`` is zero, and the number of attempts can be capped, so a test
of a spider against a flaky fixture runs in milliseconds::

    from scrapy_resilience import testing

    testing.set_testing(True, attempts=2)   # for the whole session
    ...
    with testing.testing_mode():            # or for one block
        ...

The mode is process-wide (a crawl reads it each time it schedules a retry).
The sites' health (Retry-After pauses, outages: ``health``) is also left out, since it would slow the test down too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs


@attrs.define
class _Mode:
    active: bool = False
    attempts: int | None = None


_mode = _Mode()


def set_testing(active: bool, *, attempts: int | None = None) -> None:
    """Turn testing mode on or off; ``attempts`` caps the attempts per request (first included)."""
    if attempts is not None and attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts!r}")
    _mode.active = active
    _mode.attempts = attempts if active else None


def is_testing() -> bool:
    """True while testing mode is on."""
    return _mode.active


def max_attempts(configured: int) -> int:
    """The attempts to allow: ``configured``, capped in testing mode when a cap was set."""
    if _mode.active and _mode.attempts is not None:
        return min(configured, _mode.attempts)
    return configured


@contextmanager
def testing_mode(*, attempts: int | None = None) -> Iterator[None]:
    """Testing mode for the ``with`` block; the previous mode is restored after it."""
    previous = attrs.evolve(_mode)
    set_testing(True, attempts=attempts)
    try:
        yield
    finally:
        _mode.active, _mode.attempts = previous.active, previous.attempts
