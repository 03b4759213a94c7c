"""The abort policy's judgement: when a crawl should give up (the steps of giving up are in ``actions.py``).

What counts (also in docs/usage/monitor.md):

* An **operation** is either
  - the final download outcome of one request, as seen outside the retry
    layer (``OutcomeMiddleware`` sits before our retry middleware in the
    chain): a response, or an exception that survived every retry. Attempts
    that are retried, redirects and requests dropped on purpose
    (``IgnoreRequest``: offsite, robots.txt, held for a backoff) are not
    operations; or
  - a **lost turn**: once a site's outage is confirmed (``health``: its
    circuit opened and a probe failed), each failed probe is a lost turn for
    every request waiting for that site, and each request turned away
    meanwhile is one too. A dead site thus fails the crawl's work at the pace
    of its probes, however few requests are in flight, instead of never
    reaching a final outcome (its requests keep their attempts while it is
    down).
* A **failure** is a final outcome that ended in an exception (the site or the
  browser could not be reached after every retry) or in a status code of
  ``RESILIENCE_RETRY_HTTP_CODES`` (408, 429, 5xx by default), and every lost
  turn: the site is not serving. Any other status, 404 and 410 included, is
  the site answering: a dead link is a success of the crawl, so a site with
  10% dead links never reaches a 50% threshold, and pages that fail a few
  times before the retries get them are no failure at all.
* Operations are counted **per site** (download slot): each site's window
  holds its last ``RESILIENCE_ABORT_WINDOW_SIZE`` operations that are at most
  ``RESILIENCE_ABORT_WINDOW_DURATION`` seconds old. A site is *failing* when
  its window holds ``RESILIENCE_ABORT_MIN_OPERATIONS`` and its rate is *above*
  ``RESILIENCE_ABORT_FAILURE_RATE``; the crawl aborts when a site is failing
  and no other site with that many operations in its window is not: while any
  site still serves, a broad crawl goes on (the dead site's requests wait,
  pending in the checkpoint). A crawl of one site is judged exactly by that
  site's rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

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
        self._failures = 0  # among _outcomes: counts() is asked on every response, kept O(1)

    def add(self, failed: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen:
            self._failures -= self._outcomes[0][1]  # the oldest leaves as this one comes in
        self._outcomes.append((self.clock(), failed))
        self._failures += failed

    def counts(self) -> tuple[int, int]:
        """``(operations, failures)`` in the window now."""
        horizon = self.clock() - self.duration
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._failures -= self._outcomes.popleft()[1]
        return len(self._outcomes), self._failures


class AbortJudge:
    """Decides, outcome by outcome and crash by crash, whether the policy says abort."""

    def __init__(self, policy: AbortPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.windows: dict[str, FailureWindow] = {}
        self.consecutive_crashes = 0

    def operation(self, failed: bool, slot: str = "", count: int = 1) -> str | None:
        """Record ``count`` operations of ``slot``; the abort reason if the policy now says abort."""
        window = self.windows.get(slot)
        if window is None:
            window = FailureWindow(self.policy.window_size, self.policy.window_duration, self.clock)
            self.windows[slot] = window
        for _ in range(min(count, self.policy.window_size)):
            window.add(failed)
        limit = self.policy.failure_rate_threshold
        if limit is None or not self._failing(window, limit):
            return None
        for other in list(self.windows):
            operations, _ = self.windows[other].counts()
            if operations == 0:
                del self.windows[other]  # no recent operation: the site is not part of the judgement
            elif operations >= self.policy.min_operations and not self._failing(self.windows[other], limit):
                return None  # that site still serves
        return REASON_FAILURE_RATE

    def _failing(self, window: FailureWindow, limit: float) -> bool:
        operations, failures = window.counts()
        return operations >= self.policy.min_operations and 100.0 * failures / operations > limit

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

    def counts(self) -> tuple[int, int]:
        """``(operations, failures)`` in every site's window now."""
        totals = [window.counts() for window in self.windows.values()]
        return sum(ops for ops, _ in totals), sum(failures for _, failures in totals)

    def rate(self) -> float:
        operations, failures = self.counts()
        return 100.0 * failures / operations if operations else 0.0


