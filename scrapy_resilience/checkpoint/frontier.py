"""The frontier's two middlewares, installed by the add-on when checkpoints are on.

``LedgerDownloaderMiddleware`` (first in the chain) tells the ledger
(``ledger.py``) that a request left the scheduler; ``LedgerSpiderMiddleware``
gives children their own id and filters start requests already handled in an
earlier run of the job.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.spidermiddlewares.base import BaseSpiderMiddleware
from scrapy.utils.asyncio import sleep

from scrapy_resilience.checkpoint.ledger import get_ledger
from scrapy_resilience.exceptions import RequestAfterAbort
from scrapy_resilience.meta import LEDGER_KEYS, START_KEY

_YIELD_EVERY = 100  # start requests skipped per turn of the event loop
LEDGER_ORDER = 10  # both middlewares: before every built-in downloader middleware (the first is at 50)


class LedgerDownloaderMiddleware:
    """First downloader middleware: a request left the scheduler and entered the engine."""

    def __init__(self, crawler: Crawler) -> None:
        self.ledger = get_ledger(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LedgerDownloaderMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        self.ledger.entered_downloader(request)

    def process_exception(self, request: Request, exception: Exception) -> None:
        if isinstance(exception, RequestAfterAbort):
            # Refused because the crawl is aborting: still to do, in the final checkpoint.
            self.ledger.keep_pending(request)


class LedgerSpiderMiddleware(BaseSpiderMiddleware):
    """Children get ids of their own; start requests handled in an earlier run are skipped.

    Scrapy's base class gives it both a sync and an async ``process_spider_output``:
    an async-only one would switch every callback's output to Scrapy's slower
    asynchronous path (a task per item), about a tenth of the CPU of a fast crawl.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        # Filled at resume by the checkpoint extension: the fingerprints of the
        # start requests handled in earlier runs.
        self.start_seen: set[bytes] = set()
        _middlewares[crawler] = self

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        fingerprint = self.crawler.request_fingerprinter.fingerprint
        skipped = 0
        async for item_or_request in start:
            if isinstance(item_or_request, Request):
                if self.start_seen and fingerprint(item_or_request) in self.start_seen:
                    skipped += 1
                    if skipped % _YIELD_EVERY == 0:
                        # A resumed crawl may skip a million start requests in a row, and
                        # the engine reads start() without yielding while the downloader is full.
                        await sleep(0)
                    continue
                item_or_request.meta[START_KEY] = True
            yield item_or_request
        self.start_seen = set()

    def get_processed_request(self, request: Request, response: Response | None) -> Request:
        # meta=response.meta is common: a child must not inherit its parent's id.
        # Scrapy 2.19 creates meta on first access: a child without one has nothing to strip.
        if getattr(request, "_meta", True) is not None and not request.meta.keys().isdisjoint(LEDGER_KEYS):
            for key in LEDGER_KEYS:
                request.meta.pop(key, None)
        return request


_middlewares: weakref.WeakKeyDictionary[Crawler, LedgerSpiderMiddleware] = weakref.WeakKeyDictionary()


def spider_middleware(crawler: Crawler) -> LedgerSpiderMiddleware | None:
    """The ledger's spider middleware of ``crawler``, if installed."""
    return _middlewares.get(crawler)
