"""Putting a resumed job's pending requests back into the scheduler as it drains.

Pushing a million restored requests into Scrapy's scheduler at once costs
Scrapy itself about a minute (``request_scheduled`` and its receivers, the
duplicate filter, the queue) and keeps every one as a ``Request`` object
(about 1.7 KB each with the default memory queues). They wait instead as the
journal lines they were restored from, a few hundred bytes each, and are
decoded and scheduled in small batches whenever the scheduler holds fewer
than ``low_water`` requests: a frontier read on demand, as a disk queue is.
One more is scheduled for every request that leaves the scheduler, however
full it is, so that new requests found by the resumed crawl never starve the
restored ones: those drain at least as fast as the crawl goes.

A request waiting here is still pending as far as the job is concerned: its
``"a"`` line is in the checkpoint and nothing marks it done, so a checkpoint
keeps it and a crash loses none. The spider does not close while any wait.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.utils.asyncio import call_later

from scrapy_resilience.jobdir.journal import Shards

logger = logging.getLogger(__name__)

BATCH = 200  # requests scheduled per turn of the event loop: ~10 ms of Scrapy's own scheduling work


class RefillQueue:
    """The restored pending requests not yet handed to the scheduler (``pending``: id → journal line)."""

    def __init__(self, crawler: Crawler, pending: Shards,
                 decode: Callable[[str, dict[str, Any]], Request]) -> None:
        self.crawler = crawler
        self.pending = pending
        self.decode = decode  # (id, journal record) → the request to schedule
        # Enough that the downloader never waits for the next batch between two dequeues.
        self.low_water = max(1000, 4 * crawler.settings.getint("CONCURRENT_REQUESTS"))
        self._call: Any = None
        self._owed = 0  # requests that left the scheduler since the last refill: as many restored ones are due

    # Listening only while restored requests remain: a receiver of
    # request_reached_downloader costs every request of the crawl a few microseconds.
    def _listen(self) -> None:
        self.crawler.signals.connect(self._dequeued, signal=signals.request_reached_downloader)
        self.crawler.signals.connect(self._idle, signal=signals.spider_idle)

    def _drained(self) -> None:
        self.crawler.signals.disconnect(self._dequeued, signal=signals.request_reached_downloader)
        self.crawler.signals.disconnect(self._idle, signal=signals.spider_idle)

    def __len__(self) -> int:
        return len(self.pending)

    def start(self) -> None:
        if self.pending:
            self._listen()
            self._refill_soon()

    def _queued(self) -> int:
        scheduler = self.crawler.engine.scheduler
        assert scheduler is not None  # the spider is open
        try:
            return len(scheduler)  # type: ignore[arg-type]
        except TypeError:  # a scheduler without __len__: refill only once it is empty
            return self.low_water if scheduler.has_pending_requests() else 0

    def _refill_soon(self) -> None:
        # Never from inside the engine's own dequeuing loop: on the next turn.
        if self._call is None and self.pending:
            self._call = call_later(0, self._refill)

    def _refill(self) -> None:
        self._call = None
        engine = self.crawler.engine
        if engine is None or not engine.running:
            return
        for _ in range(BATCH):
            if not self.pending:
                break
            if self._owed:
                self._owed -= 1
            elif self._queued() >= self.low_water:
                return
            key, line = self.pending.popitem()
            try:
                request = self.decode(key, json.loads(line))
            except Exception:  # a damaged journal line, or a callback the spider no longer has
                logger.exception("Request %s of the journal cannot be restored; skipped: %.300s", key, line)
                continue
            engine.crawl(request)
        if self.pending:
            self._refill_soon()
        else:
            self._drained()

    def _dequeued(self) -> None:
        if self.pending:
            self._owed += 1
            self._refill_soon()

    def _idle(self) -> None:
        if self.pending:
            self._refill_soon()
            raise DontCloseSpider
