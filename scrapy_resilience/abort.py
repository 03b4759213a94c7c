"""The abort policy: when a crawl should give up, and the ordered steps of giving up.

What counts (also in the README):

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

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from io import BytesIO
from typing import Any, cast

from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer

from scrapy_resilience import browsers, halt, signals
from scrapy_resilience.models import (
    AbortAction,
    AbortActionType,
    AbortPolicy,
    FailureCategory,
    FailureSeverity,
    RecoveryAction,
)
from scrapy_resilience.recorder import get_recorder
from scrapy_resilience.settings import AbortConfig

logger = logging.getLogger(__name__)

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


async def post_json(url: str, document: Mapping[str, Any]) -> int:
    """POST ``document`` as JSON with Twisted's non-blocking client; the status code.

    The caller bounds it with the NOTIFY timeout, whose cancellation aborts the
    connection, so a receiver that never answers cannot hold the shutdown.
    """
    # Imported here, as Scrapy does: the add-on imports this module before
    # Scrapy installs the asyncio reactor, and a module-level import would install another.
    from twisted.internet import reactor

    body = json.dumps(document, sort_keys=True, default=str).encode()
    agent = Agent(reactor, connectTimeout=ACTION_TIMEOUTS[AbortActionType.NOTIFY])
    headers = Headers({b"Content-Type": [b"application/json"], b"User-Agent": [b"scrapy-resilience"]})
    # FileBodyProducer implements IBodyProducer through zope.interface, which mypy cannot see.
    producer = cast(IBodyProducer, FileBodyProducer(BytesIO(body)))
    response = await maybe_deferred_to_future(agent.request(b"POST", url.encode(), headers, producer))
    return int(response.code)


async def run_actions(
    actions: tuple[AbortAction, ...], steps: Mapping[AbortActionType, Callable[[], Awaitable[Any]]]
) -> dict[str, str]:
    """Run each action's step in order within its timeout; a failing step never stops the next.

    Returns the outcome of each step (``done``, ``timeout`` or the error) for the
    abort document and the log.
    """
    outcomes: dict[str, str] = {}
    for action in actions:
        name = action.action_type.value
        try:
            await asyncio.wait_for(steps[action.action_type](), timeout=action.timeout)
        except asyncio.TimeoutError:
            logger.error("Abort step %s did not finish within %ss; going on", name, action.timeout)
            outcomes[name] = "timeout"
        except Exception as exc:  # the shutdown must go on whatever one step does
            logger.error("Abort step %s failed: %r; going on", name, exc)
            outcomes[name] = repr(exc)
        else:
            outcomes[name] = "done"
    return outcomes


# The category of the CRITICAL event of an abort: a site that stopped
# answering is outside the crawl; crashes are the browser's; thresholds SYSTEM.
ABORT_CATEGORIES = {REASON_FAILURE_RATE: FailureCategory.EXTERNAL, REASON_CONSECUTIVE_CRASHES: FailureCategory.BROWSER}


class AbortSteps:
    """What each AbortActionType does for one crawl; ``run`` them in the policy's order.

    A SHUTDOWN that overruns its timeout is forced (``halt.force_stop``): the
    process stops, with the final checkpoint of SAVE_STATE already written.
    """

    def __init__(
        self,
        crawler: Any,
        notify_url: str | None,
        checkpoints: Callable[[], Any],
        stop_readings: Callable[[], None],
    ) -> None:
        self.crawler = crawler
        self.notify_url = notify_url
        self.checkpoints = checkpoints
        self.stop_readings = stop_readings

    async def run(
        self, actions: tuple[AbortAction, ...], reason: str, detail: dict[str, Any], document: dict[str, Any]
    ) -> dict[str, str]:
        steps = {
            AbortActionType.SAVE_STATE: lambda: self.save_state(reason),
            AbortActionType.LOG_EVENT: lambda: self.log_event(reason, detail),
            AbortActionType.NOTIFY: lambda: self.notify(reason, document),
            AbortActionType.CLEANUP: self.cleanup,
            AbortActionType.SHUTDOWN: lambda: self.shutdown(reason),
        }
        outcomes = await run_actions(actions, steps)
        if outcomes.get(AbortActionType.SHUTDOWN.value) == "timeout":
            outcomes[AbortActionType.SHUTDOWN.value] = "forced"
            timeout = next(a.timeout for a in actions if a.action_type is AbortActionType.SHUTDOWN)
            await halt.force_stop(self.crawler, reason, timeout)
        return outcomes

    async def save_state(self, reason: str) -> None:
        checkpoints = self.checkpoints()
        if checkpoints is not None:
            # Shielded: a checkpoint that outlasts the step's timeout is left to
            # finish (the next step runs), never cancelled halfway.
            await asyncio.shield(asyncio.ensure_future(checkpoints.save_checkpoint(reason)))

    async def log_event(self, reason: str, detail: dict[str, Any]) -> None:
        get_recorder(self.crawler).record(
            category=ABORT_CATEGORIES.get(reason, FailureCategory.SYSTEM),
            severity=FailureSeverity.CRITICAL,
            recovery_action=RecoveryAction.ABORT,
            source="monitor",
            message=f"Crawl stopped: {reason}",
            context=detail,
        )

    async def notify(self, reason: str, document: dict[str, Any]) -> None:
        self.crawler.signals.send_catch_log(
            signals.abort_triggered, reason=reason, document=document, spider=self.crawler.spider
        )
        if self.notify_url:
            status = await post_json(self.notify_url, document)
            logger.info("Abort notification sent to %s: HTTP %s", self.notify_url, status)

    async def cleanup(self) -> None:
        self.stop_readings()
        if not browsers.loaded():
            return
        from scrapy_resilience.playwright_bridge import close_contexts, playwright_handlers

        for handler in playwright_handlers(self.crawler):
            await close_contexts(handler)

    async def shutdown(self, reason: str) -> None:
        # Shielded: past the step's timeout the close is not cancelled halfway
        # but given up with the whole process (``run``).
        await asyncio.shield(asyncio.ensure_future(self.crawler.engine.close_spider_async(reason=reason)))


class RequestAfterAbort(IgnoreRequest):
    """A request refused because the crawl is being stopped: it was never sent, it is not done."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(f"Not sent: the crawl is stopping ({reason})")


# First in process_request (nothing is sent after an abort) and last in
# process_response/process_exception, after the retry middleware (550): what
# reaches it is a final outcome.
OUTCOME_ORDER = 50


class OutcomeMiddleware:
    """Feeds final download outcomes to the monitor's abort policy; refuses sends after an abort."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self._looked_up = False
        self._found: Any = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> OutcomeMiddleware:
        return cls(crawler)

    def _monitor(self) -> Any:
        # Looked up once the engine exists (extensions are built after middlewares).
        if not self._looked_up:
            from scrapy_resilience.monitor import MonitorExtension  # the monitor imports this module

            self._found = self.crawler.get_extension(MonitorExtension)
            self._looked_up = True
        return self._found

    def process_request(self, request: Any) -> None:
        monitor = self._monitor()
        if monitor is not None and not monitor.may_send():
            raise RequestAfterAbort(monitor.stopping)

    def process_response(self, request: Any, response: Response) -> Response:
        monitor = self._monitor()
        if monitor is not None:
            monitor.outcome(request, response)
        return response

    def process_exception(self, request: Any, exception: Exception) -> None:
        monitor = self._monitor()
        if monitor is not None:
            monitor.outcome(request, exception)
