"""The abort policy's judgement: when a crawl should give up (the steps of giving up are in ``actions.py``).

What counts (also in docs/usage/monitor.md):

* An **operation** is the final download outcome of one request, as seen
  outside the retry layer (``OutcomeMiddleware`` sits before our retry
  middleware in the chain): a response, or an exception that survived every
  retry. Attempts that are retried, redirects and requests dropped on purpose
  (``IgnoreRequest``: offsite, robots.txt, held for a backoff) are not
  operations.
* A **failure** is an operation that ended in an exception (the site or the
  browser could not be reached after every retry) or in a status code of
  ``RESILIENCE_RETRY_HTTP_CODES`` (408, 429, 5xx by default): the site is not
  serving. Any other status, 404 and 410 included, is the site answering: a
  dead link is a success of the crawl, so a site with 10% dead links never
  reaches a 50% threshold, while a site that stops answering reaches 100%.
* The rate is judged over the last ``RESILIENCE_ABORT_WINDOW_SIZE`` operations
  that are at most ``RESILIENCE_ABORT_WINDOW_DURATION`` seconds old, once the
  window holds ``RESILIENCE_ABORT_MIN_OPERATIONS``; it aborts when it is
  *above* ``RESILIENCE_ABORT_FAILURE_RATE``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response

from scrapy_resilience.model.entities import AbortAction, AbortActionType, AbortPolicy
from scrapy_resilience.settings import AbortConfig

REASON_FAILURE_RATE = "resilience_failure_rate"
REASON_CONSECUTIVE_CRASHES = "resilience_consecutive_crashes"


# Seconds each step may take before the next one runs. Saving state may write
# a large frontier; the webhook gets little: a slow receiver must not hold up
# the shutdown. The graceful close (SHUTDOWN) gets RESILIENCE_ABORT_SHUTDOWN_TIMEOUT:
# it waits for in-flight downloads, bounded by DOWNLOAD_TIMEOUT (ours for
# browser requests too), but also for callbacks, which nothing bounds.
ACTION_TIMEOUTS: Mapping[AbortActionType, int] = {
    AbortActionType.SAVE_STATE: 120,
    AbortActionType.LOG_EVENT: 5,
    AbortActionType.NOTIFY: 10,
    AbortActionType.CLEANUP: 30,
}


def policy_from_config(config: AbortConfig) -> AbortPolicy:
    """The data model's AbortPolicy of the settings (0, meaning off, becomes ``None``)."""
    timeouts = {**ACTION_TIMEOUTS, AbortActionType.SHUTDOWN: config.shutdown_timeout}
    return AbortPolicy(
        name="settings",
        failure_rate_threshold=config.failure_rate or None,
        window_size=config.window_size,
        window_duration=config.window_duration,
        consecutive_crashes=config.consecutive_crashes or None,
        min_operations=config.min_operations,
        abort_actions=tuple(
            AbortAction(action_type=kind, target="crawl", timeout=timeouts[kind]) for kind in config.actions
        ),
    )


class FailureWindow:
    """Outcomes of the last ``size`` operations no older than ``duration`` seconds."""

    def __init__(self, size: int, duration: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.duration = duration
        self.clock = clock
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=size)

    def add(self, failed: bool) -> None:
        self._outcomes.append((self.clock(), failed))

    def counts(self) -> tuple[int, int]:
        """``(operations, failures)`` in the window now."""
        horizon = self.clock() - self.duration
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()
        return len(self._outcomes), sum(failed for _, failed in self._outcomes)


class AbortJudge:
    """Decides, outcome by outcome and crash by crash, whether the policy says abort."""

    def __init__(self, policy: AbortPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.window = FailureWindow(policy.window_size, policy.window_duration, clock)
        self.consecutive_crashes = 0

    def operation(self, failed: bool) -> str | None:
        """Record one operation; the abort reason if the failure rate is now over the limit."""
        self.window.add(failed)
        limit = self.policy.failure_rate_threshold
        if limit is None:
            return None
        operations, failures = self.window.counts()
        if operations >= self.policy.min_operations and 100.0 * failures / operations > limit:
            return REASON_FAILURE_RATE
        return None

    def crash(self, count: int = 1) -> str | None:
        """Record ``count`` crashes in a row (browser crashes, or earlier runs that died)."""
        self.consecutive_crashes += count
        limit = self.policy.consecutive_crashes
        if limit is not None and self.consecutive_crashes >= limit:
            return REASON_CONSECUTIVE_CRASHES
        return None

    def crash_free(self) -> None:
        """Something worked (a browser page was served): crashes are no longer in a row."""
        self.consecutive_crashes = 0

    def rate(self) -> float:
        operations, failures = self.window.counts()
        return 100.0 * failures / operations if operations else 0.0


def is_failure(outcome: Response | BaseException, failure_codes: frozenset[int]) -> bool | None:
    """Whether a final download outcome is a failure; ``None`` when it is not an operation."""
    if isinstance(outcome, Response):
        return outcome.status in failure_codes
    if isinstance(outcome, IgnoreRequest):
        return None
    return True


