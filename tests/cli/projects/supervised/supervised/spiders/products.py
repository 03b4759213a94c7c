"""Product pages fetched directly: a site that dies leaves most of them pending."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import Response


class ProductsSpider(scrapy.Spider):
    """``-a site=URL -a count=N``: product pages 1..N, one item each."""

    name = "products"

    def __init__(self, site: str, count: str = "300", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site.rstrip("/")
        self.count = int(count)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for number in range(1, self.count + 1):
            yield scrapy.Request(f"{self.site}/product/{number}.html")

    def parse(self, response: Response) -> Iterator[dict[str, str]]:
        yield {"sku": response.css("span.sku::text").get() or ""}
