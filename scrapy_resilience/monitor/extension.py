"""The monitor extension: resource thresholds, browser recycling and the abort policy.

Every ``RESILIENCE_MONITOR_INTERVAL`` seconds it takes a reading of the process
tree (in a thread, see ``resources``), keeps the newest snapshot for the
checkpoints' metadata, and judges the thresholds in steps: the first reading
over a limit warns (signal, SYSTEM FailureEvent) and, for memory held mostly
by a browser, recycles the browser; a second reading in a row over the limit
stops the crawl. Final download outcomes (from ``outcome.OutcomeMiddleware``)
and browser crashes (from ``playwright_bridge``) feed the abort policy.

Stopping, for a threshold or for the abort policy, runs the configured
AbortActions in order (``actions.run_actions``): the engine is paused first so
that nothing new leaves the scheduler, ``OutcomeMiddleware`` refuses what is
still on its way and the requests waiting in the download slots' queues are
failed (``halt.fail_queued_requests``), so no request is sent after the decision.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

from scrapy import signals as scrapy_signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future

from scrapy_resilience import signals, stats
from scrapy_resilience.browser import detect as browsers
from scrapy_resilience.checkpoint.extension import CheckpointExtension
from scrapy_resilience.events.recorder import get_recorder
from scrapy_resilience.exceptions import RequestAfterAbort
from scrapy_resilience.health import is_failure, site_health
from scrapy_resilience.model.entities import (
    AbortActionType,
    FailureCategory,
    FailureSeverity,
    RecoveryAction,
    ResourceSnapshot,
    utc_now,
)
from scrapy_resilience.model.serialization import unstructure
from scrapy_resilience.monitor import actions, halt, judge, resources
from scrapy_resilience.settings import AbortConfig, MonitorConfig, read

logger = logging.getLogger(__name__)

CLOSE_REASONS = {
    "RESILIENCE_MEMORY_MB": "resilience_memory_exceeded",
    "RESILIENCE_MEMORY_PERCENT": "resilience_memory_exceeded",
    "RESILIENCE_CPU_PERCENT": "resilience_cpu_exceeded",
    "RESILIENCE_DISK_SPACE_MB": "resilience_disk_space",
    "RESILIENCE_NETWORK_CONNECTIONS": "resilience_network_connections",
}
# A browser is "the cause" of memory pressure when its processes (the tree's
# children) hold more than this share of the tree's memory.
BROWSER_CAUSE_SHARE = 0.5


class MonitorExtension:
    def __init__(self, crawler: Crawler) -> None:
        self.config = MonitorConfig.from_settings(crawler.settings)
        if not self.config.enabled:
            raise NotConfigured("RESILIENCE_MONITOR_ENABLED or RESILIENCE_ENABLED is off")
        self.crawler = crawler
        self.threshold = resources.threshold_from_config(self.config)
        self.policy = judge.policy_from_config(AbortConfig.from_settings(crawler.settings))
        self.notify_url: str | None = read(crawler.settings, "RESILIENCE_NOTIFY_URL")
        self.failure_codes = frozenset(read(crawler.settings, "RESILIENCE_RETRY_HTTP_CODES"))
        self.drain_timeout = crawler.settings.getfloat("DOWNLOAD_TIMEOUT")
        self.judge = judge.AbortJudge(self.policy)
        self.health = site_health(crawler)
        if self.policy.failure_rate_threshold is not None:
            self.health.observe(self._turns_lost)
        self.sampler = resources.Sampler(os.getpid(), self.config.checkpoint_dir)
        self.latest_snapshot: ResourceSnapshot | None = None
        self.stopping: str | None = None  # the close reason, once decided
        self.stopped_at: float | None = None  # epoch seconds of that decision
        self.blocking = False  # refuse every send: the crawl is closing
        self._cpu_history: deque[float] = deque(maxlen=resources.CPU_SUSTAINED_READINGS)
        self._over: dict[str, int] = {}  # consecutive readings over each threshold
        self._recycled_for: set[str] = set()  # thresholds whose current streak has recycled the browser
        self._browser_born: float | None = None
        self._recycling = False
        self._loop: Any = None
        self._checking: Any = None  # the Deferred of the reading in progress
        self._earlier_crashes_judged = False
        crawler.signals.connect(self._spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self._spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self._browser_crashed, signal=signals.browser_crashed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> MonitorExtension:
        return cls(crawler)

    # -- life cycle -----------------------------------------------------------

    def _spider_opened(self) -> None:
        checkpoints = self._checkpoints()
        if checkpoints is not None:
            # Each checkpoint records the latest reading (CheckpointMetadata.system_resources).
            checkpoints.resource_snapshot = lambda: self.latest_snapshot
        self._loop = create_looping_call(self._tick)
        self._loop.start(self.config.interval, now=True)

    def _spider_closed(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _checkpoints(self) -> CheckpointExtension | None:
        return self.crawler.get_extension(CheckpointExtension)

    def _judge_earlier_crashes(self) -> None:
        """Count the runs of this job that died, once the checkpoint extension has loaded the job.

        Called before the first request is sent (the engine sends nothing
        before every spider_opened handler, the job's loading included, is
        done) and at each reading, so the judgement comes first.
        """
        if self._earlier_crashes_judged:
            return
        checkpoints = self._checkpoints()
        if checkpoints is not None and getattr(checkpoints, "job", None) is None:
            return  # not loaded yet
        self._earlier_crashes_judged = True
        crashes = int(getattr(checkpoints, "crashes", 0) or 0)
        if crashes and (reason := self.judge.crash(crashes)):
            self.stop(reason, {"deaths_without_progress": crashes})

    # -- readings and thresholds ------------------------------------------------

    def _tick(self) -> None:
        # A reading of a large tree may outlast the interval: never run two at once.
        if self._checking is None:
            self._checking = deferred_from_coro(self.check_now())
            self._checking.addErrback(lambda failure: logger.error("Resource check failed", exc_info=failure.value))
            self._checking.addBoth(self._checked)

    def _checked(self, _: Any) -> None:
        self._checking = None

    async def check_now(self) -> None:
        """Take a reading and judge it now (the looping call does this every interval)."""
        self._judge_earlier_crashes()
        if self.stopping:
            return
        reading = await maybe_deferred_to_future(self.sampler.read())
        self.latest_snapshot = reading.snapshot
        crawler_stats = self.crawler.stats
        crawler_stats.inc_value(stats.RESOURCES_READINGS)
        crawler_stats.max_value(stats.MEMORY_MB_MAX, round(reading.memory_mb))
        crawler_stats.max_value(stats.CPU_PERCENT_MAX, round(reading.cpu_percent, 1))
        self._cpu_history.append(reading.cpu_percent)
        trips = resources.check(self.threshold, reading, self._cpu_history)
        tripped = {trip.setting for trip in trips}
        self._over = {name: count for name, count in self._over.items() if name in tripped}
        self._recycled_for &= tripped
        for trip in trips:
            await self._tripped(trip, reading)
            if self.stopping:
                return
        await self._maybe_recycle_for_age()

    async def _tripped(self, trip: resources.Trip, reading: resources.Reading) -> None:
        count = self._over[trip.setting] = self._over.get(trip.setting, 0) + 1
        self.crawler.stats.inc_value(stats.threshold_tripped(trip.setting))
        self.crawler.signals.send_catch_log(
            signals.threshold_tripped,
            threshold=trip.setting,
            value=trip.value,
            limit=trip.limit,
            spider=self.crawler.spider,
        )
        detail = {"threshold": trip.setting, "value": round(trip.value, 1), "limit": trip.limit, "readings_over": count}
        is_memory = trip.setting in ("RESILIENCE_MEMORY_MB", "RESILIENCE_MEMORY_PERCENT")
        # Steps: a browser that holds most of the memory is recycled first (once
        # per streak over the limit); otherwise the first reading over warns;
        # the next reading still over stops the crawl.
        recycle = (
            is_memory
            and trip.setting not in self._recycled_for
            and reading.browser_share > BROWSER_CAUSE_SHARE
            and self._has_browser()
        )
        if not recycle and count >= 2:
            self.stop(CLOSE_REASONS[trip.setting], detail)
            return
        get_recorder(self.crawler).record(
            category=FailureCategory.SYSTEM,
            severity=FailureSeverity.HIGH,
            recovery_action=RecoveryAction.RESTART if recycle else RecoveryAction.MANUAL,
            source="monitor",
            message=f"{trip.setting}: {trip.value:.1f} over the limit {trip.limit}",
            context=detail,
        )
        logger.warning(
            "%s over its limit (%.1f > %s): %s",
            trip.setting,
            trip.value,
            trip.limit,
            "recycling the browser" if recycle else "stopping if still over at the next reading",
        )
        if recycle:
            self._recycled_for.add(trip.setting)
            self._over[trip.setting] = 1  # the recycle gets one reading to bring memory down
            await self.recycle_browser("memory")

    # -- browsers ---------------------------------------------------------------

    def _handlers(self) -> list[Any]:
        if not browsers.loaded():
            return []
        # The bridge imports Playwright: imported only once scrapy-playwright is (start-up time).
        from scrapy_resilience.browser import bridge as playwright_bridge

        return playwright_bridge.playwright_handlers(self.crawler)

    def _has_browser(self) -> bool:
        from scrapy_resilience.browser.bridge import has_browser  # imports Playwright: see _handlers

        return any(has_browser(handler) for handler in self._handlers())

    async def _maybe_recycle_for_age(self) -> None:
        if not self.config.browser_lifetime:
            return
        if not self._has_browser():
            self._browser_born = None
        elif self._browser_born is None:
            self._browser_born = time.monotonic()
        elif time.monotonic() - self._browser_born >= self.config.browser_lifetime:
            await self.recycle_browser("lifetime")

    async def recycle_browser(self, reason: str) -> int:
        """Close every scrapy-playwright browser between requests; the next request launches a new one."""
        from scrapy_resilience.browser.bridge import recycle  # imports Playwright: see _handlers

        if self._recycling:
            return 0
        self._recycling = True
        recycled = 0
        try:
            for handler in self._handlers():
                if await recycle(handler, self.crawler, self.drain_timeout):
                    recycled += 1
                    self.crawler.stats.inc_value(stats.BROWSER_RECYCLED)
                    self.crawler.signals.send_catch_log(
                        signals.browser_recycled, reason=reason, spider=self.crawler.spider
                    )
                    logger.info("Recycled the browser (%s)", reason)
        finally:
            self._recycling = False
            self._browser_born = None
        return recycled

    def _browser_crashed(self, requests_failed: int = 0) -> None:
        self.crawler.stats.inc_value(stats.BROWSER_CRASHES)
        self._browser_born = None
        get_recorder(self.crawler).record(
            category=FailureCategory.BROWSER,
            severity=FailureSeverity.HIGH,
            recovery_action=RecoveryAction.RETRY,
            source="monitor",
            message="The browser crashed; its requests are retried on a new browser",
            context={"consecutive_crashes": self.judge.consecutive_crashes + 1, "requests_failed": requests_failed},
        )
        if reason := self.judge.crash():
            self.stop(reason, {"consecutive_crashes": self.judge.consecutive_crashes})

    # -- the abort policy ---------------------------------------------------------

    def outcome(self, request: Any, result: Any) -> None:
        """One final download outcome (from ``OutcomeMiddleware``)."""
        failed = is_failure(result, self.failure_codes)
        if failed is None or self.stopping:
            return
        if not failed and request.meta.get("playwright"):
            self.judge.crash_free()
        if self.policy.failure_rate_threshold is not None:
            self._judged(self.judge.operation(failed, self.health.slot(request)))

    def _turns_lost(self, slot: str, count: int) -> None:
        """``count`` requests of ``slot`` lost a turn to its confirmed outage (from ``health``)."""
        if not self.stopping:
            self._judged(self.judge.operation(True, slot, count))

    def _judged(self, reason: str | None) -> None:
        if reason:
            detail = {"failure_rate": round(self.judge.rate(), 1), "window": list(self.judge.counts())}
            self.stop(reason, {**detail, "sites": self.health.states()})

    def may_send(self) -> bool:
        """Whether a request may still be sent (``OutcomeMiddleware``); counts the ones refused."""
        self._judge_earlier_crashes()
        if self.blocking:
            self._blocked(1)
        return not self.blocking

    def _blocked(self, count: int) -> None:
        if count:
            self.crawler.stats.inc_value(stats.ABORT_BLOCKED, count)

    def stop(self, reason: str, detail: dict[str, Any]) -> None:
        """Stop the crawl for ``reason`` by the configured AbortActions (once; the first reason wins)."""
        if self.stopping:
            return
        self.stopping = reason
        self.stopped_at = time.time()
        shuts_down = any(a.action_type is AbortActionType.SHUTDOWN for a in self.policy.abort_actions)
        self.blocking = shuts_down
        self.crawler.stats.set_value(stats.ABORT_REASON, reason)
        logger.critical("Stopping the crawl: %s %r", reason, detail)
        self.crawler.engine.pause()
        if shuts_down:
            # Requests past OutcomeMiddleware before the decision may still wait
            # in a download slot's queue, or have just left it: they are refused
            # too, never sent, and counted as blocked.
            halt.fail_queued_requests(self.crawler.engine.downloader, lambda: RequestAfterAbort(reason), self._blocked)
        d = deferred_from_coro(self._run_actions(reason, detail, shuts_down))
        d.addErrback(lambda failure: logger.error("Abort failed", exc_info=failure.value))

    def document(self, reason: str, detail: dict[str, Any]) -> dict[str, Any]:
        """The abort as JSON: sent with ``abort_triggered`` and POSTed to ``RESILIENCE_NOTIFY_URL``."""
        spider = self.crawler.spider
        snapshot = unstructure(self.latest_snapshot) if self.latest_snapshot is not None else None
        return {
            "reason": reason,
            "detail": detail,
            "spider": getattr(spider, "name", None),
            "job_id": read(self.crawler.settings, "RESILIENCE_JOB_ID") or getattr(spider, "name", None),
            "timestamp": utc_now().isoformat(),
            "resources": snapshot,
            "stats": {k: v for k, v in self.crawler.stats.get_stats().items() if k.startswith(stats.PREFIX)},
        }

    async def _run_actions(self, reason: str, detail: dict[str, Any], shuts_down: bool) -> None:
        steps = actions.AbortSteps(self.crawler, self.notify_url, self._checkpoints, self._spider_closed)
        outcomes = await steps.run(self.policy.abort_actions, reason, detail, self.document(reason, detail))
        logger.info("Abort steps: %r", outcomes)
        if not shuts_down:
            # Without SHUTDOWN the policy only reports: the crawl goes on.
            self.crawler.engine.unpause()
