"""The example spiders: catalogue (plain HTTP), js_catalogue (Chromium), members (login)."""

from __future__ import annotations

from typing import Any

import scrapy
from scrapy.http import TextResponse

# Only the browser spiders route downloads through scrapy-playwright (the
# add-on swaps in its own subclass), so the plain HTTP ones start no driver.
PLAYWRIGHT_HANDLERS = {
    "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
    "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
}


class DemoSiteSpider(scrapy.Spider):
    """A spider of the demo shop: its base URL is `-a site=URL`, else the DEMO_SITE_URL setting."""

    site: str | None = None

    @property
    def base_url(self) -> str:
        return (self.site or self.settings.get("DEMO_SITE_URL")).rstrip("/")

    def product_item(self, response: TextResponse) -> dict[str, Any]:
        """The item of a detail page (plain or JS-rendered, the markup is the same)."""
        return {
            "sku": response.css("span.sku::text").get(),
            "title": response.css("h1.title::text").get(),
            "price": float(response.css("p.price::text").get(default="nan")),
            "url": response.url,
        }
