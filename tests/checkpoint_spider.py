"""A spider for ``scrapy runspider`` in the resume tests (not collected: no ``test_`` prefix).

It crawls the demo catalogue like example_project's catalogue spider, counts
the pages it parsed in ``spider.state`` and, with ``-a poison=PATH``, dies
(``os._exit``) in the callback of that page, like a page that makes a parser
or a browser take the process down. ``-a start_urls=N`` also yields N extra
start requests (``dont_filter``, as Scrapy's own are) for product pages
instead of the catalogue, slowly (a lazy start of many URLs, read as it goes).
``-a die_in_start=1`` dies in ``start()`` before its first request, as a crawl
whose start-up crashes (a second after the run began, so that the run is in
the journal).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.utils.asyncio import sleep


class CheckpointTestSpider(scrapy.Spider):
    name = "checkpoint_test"
    custom_settings = {  # noqa: RUF012 (Scrapy's own convention)
        "ADDONS": {"scrapy_resilience.Addon": 500},
        "TELNETCONSOLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "CONCURRENT_REQUESTS": 8,
    }

    def __init__(self, site: str, poison: str = "", start_urls: str = "0", die_in_start: str = "",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site.rstrip("/")
        self.poison = poison
        self.extra_starts = int(start_urls)
        self.die_in_start = bool(die_in_start)

    async def start(self) -> AsyncIterator[Any]:
        if self.die_in_start:
            await sleep(1.0)  # the checkpoint extension's "run" line reaches the journal meanwhile
            os._exit(70)
        if not self.extra_starts:
            yield scrapy.Request(self.site + "/catalogue/page-1.html", callback=self.parse)
        for n in range(1, self.extra_starts + 1):
            await sleep(0.02)  # a start() that reads its URLs as it goes (a file, an API)
            yield scrapy.Request(f"{self.site}/product/{n}.html", callback=self.parse_product, dont_filter=True)

    def parse(self, response: scrapy.http.Response) -> Iterator[scrapy.Request]:
        self.state["pages"] = self.state.get("pages", 0) + 1
        yield from response.follow_all(css="li.product a", callback=self.parse_product)
        yield from response.follow_all(css="li.next a", callback=self.parse)

    def parse_product(self, response: scrapy.http.Response) -> Iterator[dict[str, Any]]:
        if self.poison and response.url.endswith(self.poison):
            os._exit(70)  # the whole process dies, as on a segfault in a parser
        self.state["pages"] = self.state.get("pages", 0) + 1
        yield {"sku": response.css("span.sku::text").get(), "url": response.url}
