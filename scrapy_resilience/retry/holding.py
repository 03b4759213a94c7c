"""Held retries: requests kept out of the crawl until their backoff is over.

Owned by the retry middleware (``RetryMiddleware.hold`` and
``held_requests`` delegate here). A retry that must wait is returned to the
engine with ``mark(request, not_before)``; the engine's ``request_scheduled``
signal then reaches ``_request_scheduled``, which holds the request and raises
``IgnoreRequest``: Scrapy documents that as "drop this request before the
scheduler", and drops it without logging, without ``request_dropped`` and
without calling any errback. The waiting request thus sits in no download slot
and in no ``CONCURRENT_REQUESTS`` place; a ``call_later`` timer (no blocking)
re-injects it with ``engine.crawl(request)`` when due, and ``spider_idle``
raises ``DontCloseSpider`` while anything is held.
"""

from __future__ import annotations

import itertools
import logging
import time

import attrs
from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, IgnoreRequest
from scrapy.utils.asyncio import CallLaterResult, call_later

from scrapy_resilience import signals as resilience_signals
from scrapy_resilience import stats

logger = logging.getLogger(__name__)

# Set on a retry between the middleware and our request_scheduled handler
# only; never seen by the scheduler or the spider.
_META_NOT_BEFORE = "_resilience_not_before"


def mark(request: Request, not_before: float) -> None:
    """Have ``request`` held until the wall-clock time ``not_before`` when the engine schedules it."""
    request.meta[_META_NOT_BEFORE] = not_before


@attrs.define
class _Held:
    request: Request
    not_before: float
    timer: CallLaterResult | None = None


class HeldRequests:
    """The requests waiting for their backoff, and their timers."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._held: dict[int, _Held] = {}
        self._keys = itertools.count()
        crawler.signals.connect(self._request_scheduled, signal=signals.request_scheduled)
        crawler.signals.connect(self._spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    def hold(self, request: Request, not_before: float) -> None:
        """Keep ``request`` out of the crawl until the wall-clock time ``not_before``, then crawl it."""
        request.meta.pop(_META_NOT_BEFORE, None)
        if not request.dont_filter:  # its fingerprint was seen: the dupefilter would drop it
            request = request.replace(dont_filter=True)
        key = next(self._keys)
        held = self._held[key] = _Held(request, not_before)
        held.timer = call_later(max(0.0, not_before - time.time()), self._release, key)
        self._gauge()
        self.crawler.signals.send_catch_log(resilience_signals.request_held, request=request, not_before=not_before)

    def listed(self) -> list[tuple[Request, float]]:
        """The held requests with their ``not_before`` (epoch seconds)."""
        return [(held.request, held.not_before) for held in self._held.values()]

    def _release(self, key: int) -> None:
        held = self._held.pop(key, None)
        self._gauge()
        if held is None:
            return
        engine = self.crawler.engine
        if engine is None or engine.spider is None:
            logger.warning("Dropped held retry of %(request)s: the spider is closed", {"request": held.request})
            return
        engine.crawl(held.request)

    def _gauge(self) -> None:
        if self.crawler.stats is not None:
            self.crawler.stats.set_value(stats.RETRY_HELD, len(self._held))

    def _request_scheduled(self, request: Request) -> None:
        not_before = request.meta.get(_META_NOT_BEFORE)
        if not_before is None:
            return
        self.hold(request, not_before)
        raise IgnoreRequest

    def _spider_idle(self) -> None:
        if self._held:
            raise DontCloseSpider

    def _spider_closed(self) -> None:
        # The held requests stay listed for the final checkpoint, which a
        # spider_closed handler running after this one may take.
        if self._held:
            logger.info(
                "%(count)d held retries not sent before the spider closed (a checkpoint keeps them)",
                {"count": len(self._held)},
            )
        for held in self._held.values():
            if held.timer is not None:
                held.timer.cancel()
