"""members: logs in, then crawls the pages that need the session cookie."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import TextResponse

from shop.spiders import DemoSiteSpider


class MembersSpider(DemoSiteSpider):
    """Logs in at /login, follows /members/ pages and items; logs in again when the session is lost."""

    name = "members"

    async def start(self) -> AsyncIterator[Any]:
        yield self.login(self.base_url + "/members/page-1.html")

    def login(self, then: str) -> scrapy.Request:
        # /login answers with the session cookie and a redirect; Scrapy's cookie middleware keeps it.
        return scrapy.FormRequest(
            self.base_url + "/login",
            formdata={"username": "demo", "password": "demo"},
            callback=self.logged_in,
            cb_kwargs={"then": then},
            dont_filter=True,
        )

    def logged_in(self, response: TextResponse, then: str) -> Iterator[scrapy.Request]:
        yield scrapy.Request(then, callback=self.parse, dont_filter=True)

    def parse(self, response: TextResponse, **kwargs: Any) -> Iterator[Any]:
        if self.needs_login(response):
            yield self.login(response.url)
            return
        yield from response.follow_all(css="a.item", callback=self.parse_item)
        yield from response.follow_all(css="li.next a", callback=self.parse)

    def parse_item(self, response: TextResponse) -> Iterator[Any]:
        if self.needs_login(response):
            yield self.login(response.url)
            return
        yield {
            "sku": response.css("span.sku::text").get(),
            "title": response.css("h1.title::text").get(),
            "url": response.url,
        }

    @staticmethod
    def needs_login(response: TextResponse) -> bool:
        # The site answers 200 with this heading, as many real sites do, instead of a 401.
        return response.css("h1::text").get() == "Please log in"
