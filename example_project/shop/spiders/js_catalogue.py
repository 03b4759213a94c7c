"""js_catalogue: the same catalogue, whose links only exist once JavaScript has run (Chromium)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import TextResponse
from scrapy_playwright.page import PageMethod

from shop.spiders import PLAYWRIGHT_HANDLERS, DemoSiteSpider

# The list pages render their links after a short delay. The second selector
# matches a page without a catalogue (an error page during an outage, say), so
# that it is handed to the retry logic at once instead of timing out.
RENDERED = "ol.products[data-rendered], body:not(:has(ol.products))"


class JsCatalogueSpider(DemoSiteSpider):
    """Crawls /js/ through scrapy-playwright: list pages wait for their links; detail pages render inline."""

    name = "js_catalogue"
    custom_settings = {  # noqa: RUF012 (Scrapy declares it a plain class attribute)
        "DOWNLOAD_HANDLERS": PLAYWRIGHT_HANDLERS,
        "CONCURRENT_REQUESTS": 4,
    }

    async def start(self) -> AsyncIterator[Any]:
        yield self.list_request(self.base_url + "/js/page-1.html")

    def list_request(self, url: str) -> scrapy.Request:
        meta = {"playwright": True, "playwright_page_methods": [PageMethod("wait_for_selector", RENDERED)]}
        return scrapy.Request(url, callback=self.parse, meta=meta)

    def parse(self, response: TextResponse, **kwargs: Any) -> Iterator[scrapy.Request]:
        # The detail pages fill themselves in with an inline script, done by the time "load" fires.
        yield from response.follow_all(css="a.product", callback=self.parse_product, meta={"playwright": True})
        for href in response.css("li.next a::attr(href)").getall():
            yield self.list_request(response.urljoin(href))

    def parse_product(self, response: TextResponse) -> Iterator[dict[str, Any]]:
        yield self.product_item(response)
