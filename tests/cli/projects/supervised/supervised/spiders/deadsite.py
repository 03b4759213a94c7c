"""A site that answers 503 to everything: the abort policy's failure rate closes the crawl."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import scrapy
from scrapy.http import Response


class DeadSiteSpider(scrapy.Spider):
    """``-a site=URL -a key=K``: 40 pages that fail with 503 for ever (keyed, so tests do not collide)."""

    name = "deadsite"
    custom_settings: ClassVar[dict[str, Any]] = {
        "RESILIENCE_ABORT_FAILURE_RATE": 50,
        "RESILIENCE_ABORT_MIN_OPERATIONS": 5,
        "RESILIENCE_RETRY_MAX_ATTEMPTS": 2,
    }

    def __init__(self, site: str, key: str = "dead", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site.rstrip("/")
        self.key = key

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for number in range(40):
            yield scrapy.Request(f"{self.site}/fault/status/503?key={self.key}-{number}")

    def parse(self, response: Response) -> None:
        pass
