"""members_js: a browser session (a cookie and a localStorage token set by JavaScript) that must survive a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import TextResponse
from scrapy_playwright.page import PageMethod

from shop.spiders import PLAYWRIGHT_HANDLERS, DemoSiteSpider

CHECKS = 30


class MembersJsSpider(DemoSiteSpider):
    """Logs in once at /members-js/ in Chromium, then reads check pages that need the session's localStorage."""

    name = "members_js"
    custom_settings = {  # noqa: RUF012 (Scrapy declares it a plain class attribute)
        "DOWNLOAD_HANDLERS": PLAYWRIGHT_HANDLERS,
        "CONCURRENT_REQUESTS": 2,
    }

    async def start(self) -> AsyncIterator[Any]:
        yield scrapy.Request(
            self.base_url + "/members-js/",
            meta={"playwright": True, "playwright_page_methods": [PageMethod("wait_for_selector", "text=Logged in")]},
            callback=self.logged_in,
        )

    def logged_in(self, response: TextResponse) -> Iterator[scrapy.Request]:
        for n in range(1, CHECKS + 1):
            yield scrapy.Request(
                f"{self.base_url}/members-js/check.html?n={n}",
                # The page writes its verdict with JavaScript; wait until it has.
                meta={
                    "playwright": True,
                    "playwright_page_methods": [PageMethod("wait_for_selector", "#status:not(:empty)")],
                },
                callback=self.check,
                cb_kwargs={"n": n},
            )

    def check(self, response: TextResponse, n: int) -> Iterator[dict[str, Any]]:
        yield {"n": n, "status": response.css("#status::text").get(), "token": response.css("#token::text").get()}
