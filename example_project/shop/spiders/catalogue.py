"""catalogue: list pages -> detail pages -> items, over plain HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import TextResponse

from shop.spiders import DemoSiteSpider


class CatalogueSpider(DemoSiteSpider):
    """Follows every list page (`next`) and every product link; one item per live product."""

    name = "catalogue"

    async def start(self) -> AsyncIterator[Any]:
        yield scrapy.Request(self.base_url + "/catalogue/page-1.html", callback=self.parse)

    def parse(self, response: TextResponse, **kwargs: Any) -> Iterator[scrapy.Request]:
        # Dead links (404) are dropped by Scrapy's HttpErrorMiddleware, as on any real site.
        yield from response.follow_all(css="li.product a", callback=self.parse_product)
        yield from response.follow_all(css="li.next a", callback=self.parse)

    def parse_product(self, response: TextResponse) -> Iterator[dict[str, Any]]:
        yield self.product_item(response)
