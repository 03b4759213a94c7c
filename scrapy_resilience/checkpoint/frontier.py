"""The frontier's two middlewares, installed by the add-on when checkpoints are on.

``LedgerDownloaderMiddleware`` (first in the chain) tells the ledger
(``ledger.py``) that a request left the scheduler; ``LedgerSpiderMiddleware``
marks start requests and filters those already handled in an earlier run of
the job. Neither sees a callback's output: the ledger itself tells a child
built with ``meta=response.meta`` from a retry or redirect of its parent.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import sleep

from scrapy_resilience.checkpoint.ledger import get_ledger
from scrapy_resilience.exceptions import RequestAfterAbort
from scrapy_resilience.meta import START_KEY

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


class LedgerSpiderMiddleware:
    """Start requests are marked as such; those handled in an earlier run are skipped.

    It has no ``process_spider_output``: in Scrapy 2.19 each one is an
    asynchronous layer that every child and item of every callback passes
    through, a few microseconds each.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        # Filled at resume by the checkpoint extension: the fingerprints of the
        # start requests handled in earlier runs.
        self.start_seen: set[bytes] = set()
        _middlewares[crawler] = self

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LedgerSpiderMiddleware:
        return cls(crawler)

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


_middlewares: weakref.WeakKeyDictionary[Crawler, LedgerSpiderMiddleware] = weakref.WeakKeyDictionary()


def spider_middleware(crawler: Crawler) -> LedgerSpiderMiddleware | None:
    """The ledger's spider middleware of ``crawler``, if installed."""
    return _middlewares.get(crawler)
