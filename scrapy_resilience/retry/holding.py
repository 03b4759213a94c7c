"""Held requests: retries kept out of the crawl until their backoff is over, and requests
waiting for their site (a Retry-After pause, an outage).

Owned by the retry middleware (``RetryMiddleware.hold`` and
``held_requests`` delegate here). A retry that must wait is returned to the
engine with ``HeldRequests.mark(request, not_before)``; the engine's
``request_scheduled`` signal then reaches ``_request_scheduled``, which holds
the request and raises ``IgnoreRequest``: Scrapy documents that as "drop this request before the
scheduler", and drops it without logging, without ``request_dropped`` and
without calling any errback. The waiting request thus sits in no download slot
and in no ``CONCURRENT_REQUESTS`` place; a ``call_later`` timer (no blocking)
re-injects it with ``engine.crawl(request)`` when due, and ``spider_idle``
raises ``DontCloseSpider`` while anything is held.

A request *parked* for its slot (``mark(request, not_before, slot)``) has no
timer of its own: the site's health (``health.SiteHealth``, whose ``Parking``
this is) releases the slot's parked requests, one as a probe or all at once,
when the pause ends or the site answers again. Both kinds are journaled the
same way (``request_held``), so a checkpoint keeps them pending.

The ``request_scheduled`` handler is connected by the first ``mark``: a
signal receiver costs every scheduled request a few microseconds, and a crawl
in which nothing ever waits should not pay them.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

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
_META_PARK = "_resilience_park"


@attrs.define
class _Held:
    request: Request
    not_before: float
    timer: CallLaterResult | None = None


class HeldRequests:
    """The requests waiting for their backoff (with their timers) or for their slot."""

    def __init__(self, crawler: Crawler, holds_back: Callable[[str], bool] = lambda slot: True) -> None:
        self.crawler = crawler
        self.holds_back = holds_back
        self._held: dict[int, _Held] = {}
        self._parked: dict[str, deque[_Held]] = {}
        self._keys = itertools.count()
        self._listening = False  # to request_scheduled: from the first mark on
        crawler.signals.connect(self._spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    def mark(self, request: Request, not_before: float, slot: str | None = None) -> None:
        """Have ``request`` held until ``not_before`` (epoch) when the engine schedules it, or parked for ``slot``."""
        request.meta[_META_NOT_BEFORE] = not_before
        if slot is not None:
            request.meta[_META_PARK] = slot
        if not self._listening:
            self._listening = True
            self.crawler.signals.connect(self._request_scheduled, signal=signals.request_scheduled)

    def hold(self, request: Request, not_before: float, slot: str | None = None) -> None:
        """Keep ``request`` out of the crawl until the wall-clock time ``not_before`` (or ``slot`` releases it)."""
        request.meta.pop(_META_NOT_BEFORE, None)
        request.meta.pop(_META_PARK, None)
        if not request.dont_filter:  # its fingerprint was seen: the dupefilter would drop it
            request = request.replace(dont_filter=True)
        if slot is not None and not self.holds_back(slot):
            # The slot let requests through again between the decision and now: crawl it at once.
            slot, not_before = None, time.time()
        held = _Held(request, not_before)
        if slot is None:
            key = next(self._keys)
            self._held[key] = held
            held.timer = call_later(max(0.0, not_before - time.time()), self._release, key)
        else:
            self._parked.setdefault(slot, deque()).append(held)
        self._gauge()
        self.crawler.signals.send_catch_log(resilience_signals.request_held, request=request, not_before=not_before)

    def listed(self) -> list[tuple[Request, float]]:
        """The held and parked requests with their ``not_before`` (epoch seconds)."""
        parked = [held for queue in self._parked.values() for held in queue]
        return [(held.request, held.not_before) for held in [*self._held.values(), *parked]]

    # -- the Parking of health.SiteHealth --------------------------------------------

    def parked(self, slot: str) -> int:
        """How many requests wait for ``slot``."""
        queue = self._parked.get(slot)
        return len(queue) if queue else 0

    def release(self, slot: str, everyone: bool, prefer: Callable[[Request], bool]) -> int:
        """Crawl every request parked for ``slot``, or one (the first that ``prefer`` accepts, else the first)."""
        queue = self._parked.get(slot)
        if not queue:
            return 0
        if everyone:
            chosen = list(queue)
            queue.clear()
        else:
            held = next((held for held in queue if prefer(held.request)), queue[0])
            queue.remove(held)
            chosen = [held]
        if not queue:
            del self._parked[slot]
        self._gauge()
        for held in chosen:
            self._crawl(held.request)
        return len(chosen)

    def _release(self, key: int) -> None:
        held = self._held.pop(key, None)
        self._gauge()
        if held is not None:
            self._crawl(held.request)

    def _crawl(self, request: Request) -> None:
        engine = self.crawler.engine
        if engine is None or engine.spider is None:
            logger.warning("Dropped held request %(request)s: the spider is closed", {"request": request})
            return
        engine.crawl(request)

    def _gauge(self) -> None:
        if self.crawler.stats is not None:
            self.crawler.stats.set_value(stats.RETRY_HELD, len(self._held))
            self.crawler.stats.set_value(stats.HEALTH_WAITING, sum(len(q) for q in self._parked.values()))

    def _request_scheduled(self, request: Request) -> None:
        not_before = request.meta.get(_META_NOT_BEFORE)
        if not_before is None:
            return
        self.hold(request, not_before, request.meta.get(_META_PARK))
        raise IgnoreRequest

    def _spider_idle(self) -> None:
        if self._held or self._parked:
            raise DontCloseSpider

    def _spider_closed(self) -> None:
        # The held requests stay listed for the final checkpoint, which a
        # spider_closed handler running after this one may take.
        waiting = len(self._held) + sum(len(q) for q in self._parked.values())
        if waiting:
            logger.info(
                "%(count)d held requests not sent before the spider closed (a checkpoint keeps them)",
                {"count": waiting},
            )
        for held in self._held.values():
            if held.timer is not None:
                held.timer.cancel()
