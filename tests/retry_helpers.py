"""Helpers for the retry, site-health and recorder crawl tests (not collected: no ``test_`` prefix).

- ``UrlsSpider``: crawls a given list of request specs and records what came back.
- ``crawl``: runs one in-process crawl with our retry middleware in place of Scrapy's.
- ``LoopbackOnlyResolver``: a DNS resolver that answers IP literals and fails
  every name, so a DNS test never asks the system resolver.
- ``hits``: the demo site's log entries for one path prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.utils.test import get_crawler
from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IResolverSimple
from twisted.python.failure import Failure
from zope.interface import implementer

from scrapy_resilience import signals as resilience_signals
from scrapy_resilience.model.entities import FailureEvent

OURS = "scrapy_resilience.retry.RetryMiddleware"
SCRAPYS = "scrapy.downloadermiddlewares.retry.RetryMiddleware"

BASE_SETTINGS: dict[str, Any] = {
    "DOWNLOADER_MIDDLEWARES": {SCRAPYS: None, OURS: 550},
    "RESILIENCE_RETRY_BASE_DELAY": 0.1,
    "RESILIENCE_RETRY_MAX_DELAY": 0.4,
    "LOG_LEVEL": "INFO",
    "TELNETCONSOLE_ENABLED": False,
}


class UrlsSpider(Spider):
    """Requests the given specs (``(url, request kwargs)``); records responses and failures."""

    name = "urls"

    def __init__(self, specs: list[tuple[str, dict[str, Any]]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs = specs
        self.responses: list[Response] = []
        self.failures: list[Failure] = []

    async def start(self) -> AsyncIterator[Request]:
        for url, kwargs in self.specs:
            yield Request(url, callback=self.parse, errback=self.errback, **kwargs)

    def parse(self, response: Response) -> None:
        self.responses.append(response)

    def errback(self, failure: Failure) -> None:
        self.failures.append(failure)


class CatalogueSpider(Spider):
    """Crawls list pages 1..``pages`` of the demo catalogue and every product they link to."""

    name = "catalogue"

    def __init__(self, specs: list[tuple[str, dict[str, Any]]], pages: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_url = specs[0][0]
        self.pages = pages
        self.list_pages: set[str] = set()
        self.live_links: set[str] = set()
        self.products: set[str] = set()

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.start_url + "/catalogue/page-1.html", callback=self.parse_list)

    def parse_list(self, response: Response) -> Iterator[Request]:
        self.list_pages.add(response.url)
        for href in response.css("li.product a::attr(href)").getall():
            url = response.urljoin(href)
            if not url.endswith("-gone.html"):
                self.live_links.add(url)
            yield Request(url, callback=self.parse_product)
        next_page = response.css("li.next a::attr(href)").get()
        if next_page and len(self.list_pages) < self.pages:
            yield Request(response.urljoin(next_page), callback=self.parse_list)

    def parse_product(self, response: Response) -> None:
        self.products.add(response.url)


class Crawl:
    """The outcome of one test crawl."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.events: list[FailureEvent] = []
        crawler.signals.connect(self._event, signal=resilience_signals.failure_recorded)

    def _event(self, event: FailureEvent) -> None:
        self.events.append(event)

    @property
    def spider(self) -> Any:
        return self.crawler.spider

    def stat(self, key: str, default: Any = 0) -> Any:
        assert self.crawler.stats is not None
        return self.crawler.stats.get_value(key, default)


async def crawl(
    specs: list[tuple[str, dict[str, Any]]], settings: dict[str, Any] | None = None, spidercls: type = UrlsSpider
) -> Crawl:
    """Run one crawl of ``specs`` with BASE_SETTINGS updated by ``settings``."""
    crawler = get_crawler(spidercls, {**BASE_SETTINGS, **(settings or {})})
    result = Crawl(crawler)
    await crawler.crawl(specs=specs)
    return result


def hits(site: Any, prefix: str) -> list[dict[str, Any]]:
    """The site's log entries whose path starts with ``prefix``, in time order."""
    return sorted((entry for entry in site.log() if entry["path"].startswith(prefix)), key=lambda e: e["t"])


@implementer(IResolverSimple)
class LoopbackOnlyResolver:
    """Resolves IP literals to themselves and fails every name."""

    def getHostByName(self, name: str, timeout: Any = ()) -> defer.Deferred[str]:
        if isIPAddress(name) or isIPv6Address(name):
            return defer.succeed(name)
        return defer.fail(DNSLookupError(f"no results for hostname lookup: {name}"))


@contextmanager
def loopback_only_resolver() -> Iterator[None]:
    """Install ``LoopbackOnlyResolver`` on the reactor for the block, then restore the previous one.

    Scrapy installs ``DNS_RESOLVER`` only in ``CrawlerProcess``/``CrawlerRunner``
    set-up, not for a ``get_crawler(...).crawl()`` of the test suite, so the
    test installs the resolver on the reactor itself.
    """
    from twisted.internet import reactor

    previous = reactor.resolver, reactor.nameResolver  # type: ignore[attr-defined]
    reactor.installResolver(LoopbackOnlyResolver())  # type: ignore[attr-defined]
    try:
        yield
    finally:
        reactor.installNameResolver(previous[1])  # type: ignore[attr-defined]
        reactor.resolver = previous[0]  # type: ignore[attr-defined]
