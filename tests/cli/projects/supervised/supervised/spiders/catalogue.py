"""The demo site's catalogue, limited to a few list pages; optionally kills itself at one page."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.utils.defer import deferred_from_coro

# Present once the first run closed with ``close_once``: later runs crawl normally.
CLOSED_ONCE_MARKER = Path("closed-once.marker")


class CatalogueSpider(scrapy.Spider):
    """``-a site=URL -a pages=N [-a crash_path=/catalogue/page-2.html] [-a close_once=REASON]``.

    ``crash_path``: the process kills itself whenever it parses that page (a
    list page or a product page), as the OOM killer would.

    ``close_once``: the first run closes with REASON after its first item, as
    the monitor closes a crawl (``engine.close_spider_async``).
    """

    name = "catalogue"

    def __init__(self, site: str, pages: str = "3", crash_path: str = "", close_once: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site.rstrip("/")
        self.pages = int(pages)
        self.crash_path = crash_path
        self.close_once = close_once

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> CatalogueSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider._item_scraped, signal=signals.item_scraped)
        return spider

    def _item_scraped(self) -> None:
        if self.close_once and not CLOSED_ONCE_MARKER.exists():
            CLOSED_ONCE_MARKER.touch()
            deferred_from_coro(self.crawler.engine.close_spider_async(reason=self.close_once))

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(self.site + "/catalogue/page-1.html")

    def _maybe_crash(self, response: Response) -> None:
        if self.crash_path and response.url.endswith(self.crash_path):
            # A crash the crawl cannot catch, as the OOM killer's.
            os.kill(os.getpid(), signal.SIGKILL)

    def parse(self, response: Response) -> Iterator[Any]:
        self._maybe_crash(response)
        for href in response.css("a[href*='/product/']::attr(href)").getall():
            yield response.follow(href, self.parse_product)
        number = int(response.url.rsplit("-", 1)[1].split(".")[0])
        if number < self.pages:
            yield response.follow(f"page-{number + 1}.html", self.parse)

    def parse_product(self, response: Response) -> Iterator[dict[str, str]]:
        self._maybe_crash(response)
        yield {"sku": response.css("span.sku::text").get(), "url": response.url}
