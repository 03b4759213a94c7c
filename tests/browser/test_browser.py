"""Real Chromium through scrapy-playwright: the bridge's functions, recycling, crashes, the hang."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import psutil
import pytest
import scrapy
from chromium import LAUNCH_OPTIONS
from scrapy import signals as scrapy_signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware as ScrapyRetryMiddleware
from scrapy.exceptions import DontCloseSpider
from scrapy.settings import Settings
from scrapy.utils.defer import deferred_f_from_coro_f, deferred_from_coro, maybe_deferred_to_future
from scrapy.utils.test import get_crawler
from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler

from scrapy_resilience import signals, stats
from scrapy_resilience.browser import bridge as playwright_bridge
from scrapy_resilience.browser.bridge import ResilientPlaywrightDownloadHandler
from scrapy_resilience.monitor.extension import MonitorExtension
from scrapy_resilience.monitor.outcome import OUTCOME_ORDER, OutcomeMiddleware
from scrapy_resilience.retry.middleware import RetryMiddleware


def browser_settings(**extra: Any) -> dict[str, Any]:
    settings = {
        "DOWNLOAD_HANDLERS": {"http": ResilientPlaywrightDownloadHandler, "https": ResilientPlaywrightDownloadHandler},
        "PLAYWRIGHT_LAUNCH_OPTIONS": LAUNCH_OPTIONS,
        "EXTENSIONS": {MonitorExtension: 0},
        "DOWNLOADER_MIDDLEWARES": {ScrapyRetryMiddleware: None, RetryMiddleware: 550, OutcomeMiddleware: OUTCOME_ORDER},
        "RESILIENCE_RETRY_BASE_DELAY": 0.1,
        "RESILIENCE_RETRY_MAX_DELAY": 1.0,
        "RESILIENCE_MONITOR_INTERVAL": 0.5,
        # Fewer page slots than concurrent requests: some requests wait for a
        # slot, which is where a crashed browser used to leave them forever.
        "CONCURRENT_REQUESTS": 6,
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 2,
        "DOWNLOAD_TIMEOUT": 15,
        "LOG_LEVEL": "INFO",
        "TELNETCONSOLE_ENABLED": False,
    }
    settings.update(extra)
    return settings


class BrowserProductsSpider(scrapy.Spider):
    """Fetches product pages 1..count through the browser and yields each SKU."""

    name = "browser_products"

    async def start(self):
        for number in range(1, int(self.count) + 1):
            yield scrapy.Request(f"{self.base}/product/{number}.html", meta={"playwright": True})

    def parse(self, response):
        yield {"sku": response.css("span.sku::text").get()}


class Skus:
    """Collects scraped SKUs and runs ``action`` once, when the ``after``-th response arrives."""

    def __init__(self, crawler: Any, after: int = 0, action: Any = None) -> None:
        self.skus: list[str] = []
        self.responses = 0
        self.after = after
        self.action = action
        self.acted: Any = None
        crawler.signals.connect(self.item, signal=scrapy_signals.item_scraped)
        crawler.signals.connect(self.response, signal=scrapy_signals.response_received)

    def item(self, item: dict[str, str]) -> None:
        self.skus.append(item["sku"])

    def response(self) -> None:
        self.responses += 1
        if self.action is not None and self.responses == self.after:
            self.acted = self.action()


def live_skus(demo_site: Any, count: int) -> list[str]:
    dead = set(demo_site.info()["dead"])
    return sorted(str(n) for n in range(1, count + 1) if n not in dead)


def kill_browser(crawler: Any) -> list[int]:
    """SIGKILL every browser process of the crawl (the driver's descendants), as the OOM killer would."""
    handlers = playwright_bridge.playwright_handlers(crawler)
    processes = [process for handler in handlers for process in playwright_bridge.browser_processes(handler)]
    for process in processes:
        # A child may already be gone: killing the browser's main process takes its helpers with it.
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=10)
    return [process.pid for process in processes]


def test_swap_download_handlers_replaces_scrapy_playwrights_at_its_priority():
    """A project's scrapy-playwright handler becomes ours; other handlers are left alone."""
    settings = Settings()
    path = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
    settings.set("DOWNLOAD_HANDLERS", {"http": path, "https": path, "ftp": None}, priority="project")
    playwright_bridge.swap_download_handlers(settings)
    handlers = settings["DOWNLOAD_HANDLERS"]
    assert handlers["http"] is handlers["https"] is ResilientPlaywrightDownloadHandler
    assert handlers.getpriority("http") == settings.getpriority("DOWNLOAD_HANDLERS")
    assert handlers["ftp"] is None
    plain = Settings()
    playwright_bridge.swap_download_handlers(plain)
    assert "scrapy_playwright" not in str(plain.getdict("DOWNLOAD_HANDLERS"))


@deferred_f_from_coro_f
async def test_bridge_reads_the_real_handler(demo_site):
    """The bridge finds the handler, its driver, the browser processes and its open pages mid-crawl."""
    crawler = get_crawler(BrowserProductsSpider, settings_dict=browser_settings())
    seen: dict[str, Any] = {}

    def look() -> None:
        # One handler per scheme; the http one has launched a browser.
        (handler,) = [h for h in playwright_bridge.playwright_handlers(crawler) if playwright_bridge.has_browser(h)]
        seen["handler"] = handler
        seen["has_browser"] = playwright_bridge.has_browser(handler)
        seen["driver"] = playwright_bridge.driver_pid(handler)
        seen["names"] = set()
        for process in playwright_bridge.browser_processes(handler):
            with contextlib.suppress(psutil.NoSuchProcess):  # Chromium's helpers come and go
                seen["names"].add(process.name())
        seen["pages"] = playwright_bridge.open_pages(handler)

    skus = Skus(crawler, after=3, action=look)
    await maybe_deferred_to_future(crawler.crawl(base=demo_site.url, count=6))
    assert isinstance(seen["handler"], ScrapyPlaywrightDownloadHandler)
    assert seen["has_browser"] is True
    assert seen["driver"] > 0
    assert any("chrom" in name for name in seen["names"])
    assert seen["pages"] >= 0
    assert len(skus.skus) == 6


@deferred_f_from_coro_f
async def test_recycling_mid_crawl_loses_no_page(demo_site):
    """A browser recycled in the middle of a crawl is replaced and every page is still scraped."""
    crawler = get_crawler(BrowserProductsSpider, settings_dict=browser_settings())

    def recycle() -> Any:
        return deferred_from_coro(crawler.get_extension(MonitorExtension).recycle_browser("test"))

    skus = Skus(crawler, after=10, action=recycle)
    await maybe_deferred_to_future(crawler.crawl(base=demo_site.url, count=40))
    assert await maybe_deferred_to_future(skus.acted) == 1
    assert sorted(skus.skus) == live_skus(demo_site, 40)
    assert crawler.stats.get_value(stats.BROWSER_RECYCLED) == 1
    assert crawler.stats.get_value("playwright/browser_count") == 2
    assert crawler.stats.get_value(stats.BROWSER_CRASHES) is None
    assert crawler.stats.get_value("finish_reason") == "finished"


@deferred_f_from_coro_f
async def test_killed_browser_loses_no_page_and_the_crawl_finishes(demo_site):
    """SIGKILLing Chromium mid-crawl counts one crash; its requests fail at the disconnect and are retried."""
    crawler = get_crawler(BrowserProductsSpider, settings_dict=browser_settings())
    skus = Skus(crawler, after=10, action=lambda: kill_browser(crawler))
    await maybe_deferred_to_future(crawler.crawl(base=demo_site.url, count=40))
    assert skus.acted  # some processes were killed
    assert sorted(skus.skus) == live_skus(demo_site, 40)
    assert crawler.stats.get_value(stats.BROWSER_CRASHES) == 1
    assert crawler.stats.get_value(stats.failures("browser")) >= 1
    assert crawler.stats.get_value("finish_reason") == "finished"


class HangingPagesSpider(scrapy.Spider):
    """Product pages 1..count through the browser, and two pages that hang on their first attempt.

    The second hanging page and the second half of the products are only
    requested once the first hanging page has been answered.
    """

    name = "hanging_pages"

    def hang(self, number: int) -> scrapy.Request:
        url = f"{self.base}/fault/hang?key={self.key}-{number}&times=1"
        # First out of the scheduler: each crash below is triggered by a later request.
        return scrapy.Request(url, meta={"playwright": True}, priority=1, callback=self.answered,
                              cb_kwargs={"number": number})  # fmt: skip

    def products(self, first: int, last: int) -> list[scrapy.Request]:
        return [scrapy.Request(f"{self.base}/product/{n}.html", meta={"playwright": True}) for n in range(first, last)]

    async def start(self):
        yield self.hang(1)
        for request in self.products(1, int(self.count) // 2 + 1):
            yield request

    def answered(self, response, number):
        yield {"sku": f"hang-{number}"}
        if number == 1:
            yield self.hang(2)
            yield from self.products(int(self.count) // 2 + 1, int(self.count) + 1)

    def parse(self, response):
        yield {"sku": response.css("span.sku::text").get()}


class KillWhileHanging:
    """SIGKILLs Chromium while a hanging page is on it: at the first response to a request sent after that page."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self.sent = 0
        self.order: dict[int, int] = {}  # id(request) -> when it reached the downloader
        self.armed: int | None = None
        self.kills = 0
        crawler.signals.connect(self.reached, signal=scrapy_signals.request_reached_downloader)
        crawler.signals.connect(self.response, signal=scrapy_signals.response_received)

    def reached(self, request: Any) -> None:
        self.sent += 1
        self.order[id(request)] = self.sent
        if "/fault/hang" in request.url and request.meta.get("retry_times", 0) == 0:
            self.armed = self.sent

    def response(self, request: Any) -> None:
        if self.armed is not None and self.order.get(id(request), 0) > self.armed:
            self.armed = None
            self.kills += 1
            for handler in playwright_bridge.playwright_handlers(self.crawler):
                for process in playwright_bridge.browser_processes(handler):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        process.kill()  # no wait: the disconnection is what the crawl must notice


@pytest.mark.timeout(150)  # far below DOWNLOAD_TIMEOUT: a request left on a dead browser would fail this test
@deferred_f_from_coro_f
async def test_a_killed_browser_fails_its_requests_at_once_with_the_default_timeout(demo_site):
    """Chromium SIGKILLed twice with a page hanging on it: failed at the disconnect, retried, every page, no timeout."""
    settings = {
        "ADDONS": {"scrapy_resilience.Addon": 500},
        "DOWNLOAD_HANDLERS": {"http": ScrapyPlaywrightDownloadHandler, "https": ScrapyPlaywrightDownloadHandler},
        "PLAYWRIGHT_LAUNCH_OPTIONS": LAUNCH_OPTIONS,
        "CONCURRENT_REQUESTS": 4,
        "LOG_LEVEL": "INFO",
        "TELNETCONSOLE_ENABLED": False,
    }  # DOWNLOAD_TIMEOUT and the retry settings are Scrapy's and the add-on's defaults
    crawler = get_crawler(HangingPagesSpider, settings_dict=settings)
    killer = KillWhileHanging(crawler)
    skus = Skus(crawler)
    events: list[Any] = []
    crawler.signals.connect(lambda event: events.append(event), signal=signals.failure_recorded, weak=False)
    await maybe_deferred_to_future(crawler.crawl(base=demo_site.url, count=60, key=f"kill-{time.time_ns()}"))
    assert killer.kills == 2
    assert sorted(skus.skus) == sorted([*live_skus(demo_site, 60), "hang-1", "hang-2"])
    assert crawler.stats.get_value(stats.BROWSER_CRASHES) == 2
    assert crawler.stats.get_value(stats.BROWSER_REQUESTS_FAILED) >= 2
    at_disconnect = [e.message for e in events if e.message.startswith("Browser closed under")]
    assert {e.category.value for e in events if e.message.startswith("Browser closed under")} == {"browser"}
    for number in (1, 2):  # each hanging page was failed when its browser went, not after a timeout
        assert sum(f"-{number}&times=1:" in message for message in at_disconnect) == 1, at_disconnect
    assert not [e.message for e in events if "took longer than" in e.message]
    assert crawler.stats.get_value("finish_reason") == "finished"


@deferred_f_from_coro_f
async def test_consecutive_browser_crashes_abort(demo_site):
    """A browser killed again and again, never serving a page, aborts the crawl after N crashes."""
    settings = browser_settings(RESILIENCE_ABORT_CONSECUTIVE_CRASHES=3, RESILIENCE_RETRY_MAX_ATTEMPTS=20)
    crawler = get_crawler(BrowserProductsSpider, settings_dict=settings)
    crawling = asyncio.ensure_future(
        maybe_deferred_to_future(crawler.crawl(base=f"{demo_site.url}/fault/hang?n=", count=4))
    )
    killed: set[int] = set()
    deadline = time.monotonic() + 120
    while not crawling.done() and time.monotonic() < deadline:
        handlers = playwright_bridge.playwright_handlers(crawler) if crawler.engine else []
        fresh = [p for h in handlers for p in playwright_bridge.browser_processes(h) if p.pid not in killed]
        if fresh and any(playwright_bridge.has_browser(h) for h in handlers):
            killed.update(kill_browser(crawler))
        await asyncio.sleep(0.1)  # polling the browser's processes, bounded by the deadline
    await crawling
    assert crawler.stats.get_value("finish_reason") == "resilience_consecutive_crashes"
    assert crawler.stats.get_value(stats.BROWSER_CRASHES) >= 3


@deferred_f_from_coro_f
async def test_memory_pressure_recycles_the_browser_before_closing(demo_site):
    """Over the memory limit with a browser holding most of it: recycle first, close at the next reading."""
    settings = browser_settings(RESILIENCE_MEMORY_MB=1, RESILIENCE_MONITOR_INTERVAL=3600)
    crawler = get_crawler(BrowserProductsSpider, settings_dict=settings)
    monitor_checks: list[Any] = []
    recycled: list[str] = []

    def check() -> None:
        monitor_checks.append(deferred_from_coro(crawler.get_extension(MonitorExtension).check_now()))

    def next_response() -> None:
        # The reading after the recycle: on the first response from the new browser.
        if recycled and len(monitor_checks) == 1:
            check()

    skus = Skus(crawler, after=8, action=check)
    crawler.signals.connect(lambda reason: recycled.append(reason), signal=signals.browser_recycled, weak=False)
    crawler.signals.connect(next_response, signal=scrapy_signals.response_received, weak=False)
    await maybe_deferred_to_future(crawler.crawl(base=demo_site.url, count=60))
    for done in monitor_checks:
        await maybe_deferred_to_future(done)
    assert recycled == ["memory"]
    assert crawler.stats.get_value(stats.BROWSER_RECYCLED) == 1
    assert crawler.stats.get_value("finish_reason") == "resilience_memory_exceeded"
    # Readings over the limit: at the start (no browser yet: a warning), before and after the recycle.
    assert crawler.stats.get_value(stats.threshold_tripped("RESILIENCE_MEMORY_MB")) == 3
    assert len(skus.skus) < 60


@deferred_f_from_coro_f
async def test_browser_is_recycled_after_its_lifetime(demo_site):
    """A browser older than RESILIENCE_BROWSER_LIFETIME (60 s, the least) is recycled; the next page gets a new one."""
    settings = browser_settings(RESILIENCE_BROWSER_LIFETIME=60, RESILIENCE_MONITOR_INTERVAL=1)
    crawler = get_crawler(BrowserProductsSpider, settings_dict=settings)
    recycled: list[str] = []
    deadline = time.monotonic() + 120

    def idle() -> None:
        # Keep the spider open (bounded) until the browser has aged out, then fetch one more page.
        if not recycled and time.monotonic() < deadline:
            raise DontCloseSpider
        if recycled and crawler.stats.get_value("playwright/browser_count") == 1 and len(recycled) == 1:
            recycled.append("requested")
            crawler.engine.crawl(scrapy.Request(f"{demo_site.url}/product/2.html", meta={"playwright": True}))
            raise DontCloseSpider

    crawler.signals.connect(lambda reason: recycled.append(reason), signal=signals.browser_recycled, weak=False)
    crawler.signals.connect(idle, signal=scrapy_signals.spider_idle, weak=False)
    skus = Skus(crawler)
    await maybe_deferred_to_future(crawler.crawl(base=demo_site.url, count=1))
    assert recycled == ["lifetime", "requested"]
    assert crawler.stats.get_value(stats.BROWSER_RECYCLED) == 1
    assert crawler.stats.get_value("playwright/browser_count") == 2
    assert sorted(skus.skus) == ["1", "2"]
