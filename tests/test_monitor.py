"""The monitor extension in real crawls of the demo site: abort policy, webhook, thresholds."""

from __future__ import annotations

import time
from typing import Any

import pytest
import scrapy
from scrapy import signals as scrapy_signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from scrapy.utils.test import get_crawler
from webhook_receiver import WebhookReceiver

from scrapy_resilience import signals, stats
from scrapy_resilience.abort import OUTCOME_ORDER, OutcomeMiddleware
from scrapy_resilience.monitor import MonitorExtension


class ProductsSpider(scrapy.Spider):
    """Fetches product pages 1..count directly (a site in outage yields no links to follow)."""

    name = "products"

    async def start(self):
        for number in range(1, int(self.count) + 1):
            yield scrapy.Request(f"{self.base}/product/{number}.html")

    def parse(self, response):
        yield {"sku": response.css("span.sku::text").get()}


class CatalogueSpider(scrapy.Spider):
    """Walks ``pages`` catalogue pages and every product they link, dead links included."""

    name = "catalogue"

    async def start(self):
        yield scrapy.Request(f"{self.base}/catalogue/page-1.html")

    def parse(self, response):
        for href in response.css("li.product a::attr(href)").getall():
            yield response.follow(href, self.parse_product)
        page = int(response.url.rsplit("-", 1)[1].split(".")[0])
        if page < int(self.pages):
            yield response.follow(response.css("li.next a::attr(href)").get(), self.parse)

    def parse_product(self, response):
        yield {"sku": response.css("span.sku::text").get()}


def monitor_settings(**extra: Any) -> dict[str, Any]:
    settings = {
        "EXTENSIONS": {MonitorExtension: 0},
        "DOWNLOADER_MIDDLEWARES": {OutcomeMiddleware: OUTCOME_ORDER},
        "RESILIENCE_MONITOR_INTERVAL": 0.5,
        # Equal limits: nothing waits in a download slot's queue, so every request
        # that passed the middlewares is on the wire at once.
        "CONCURRENT_REQUESTS": 8,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
        "RETRY_TIMES": 1,
        "LOG_LEVEL": "INFO",
        "TELNETCONSOLE_ENABLED": False,
    }
    settings.update(extra)
    return settings


class Sent:
    """Records when each request reached the downloader (after every middleware: it is sent)."""

    def __init__(self, crawler: Any) -> None:
        self.times: list[float] = []
        self.documents: list[dict[str, Any]] = []
        crawler.signals.connect(self.reached, signal=scrapy_signals.request_reached_downloader)
        crawler.signals.connect(self.aborted, signal=signals.abort_triggered)

    def reached(self, request: Any, spider: Any) -> None:
        self.times.append(time.time())

    def aborted(self, reason: str, document: dict[str, Any], spider: Any) -> None:
        self.documents.append(document)


async def crawl(spidercls: type[scrapy.Spider], settings: dict[str, Any], **kwargs: Any) -> tuple[Any, Sent]:
    crawler = get_crawler(spidercls, settings_dict=settings)
    sent = Sent(crawler)
    await maybe_deferred_to_future(crawler.crawl(**kwargs))
    return crawler, sent


def test_disabled_monitor_is_not_configured():
    """RESILIENCE_MONITOR_ENABLED=False (or the whole suite off) leaves the extension out."""
    for settings in ({"RESILIENCE_MONITOR_ENABLED": False}, {"RESILIENCE_ENABLED": False}):
        with pytest.raises(NotConfigured):
            MonitorExtension(get_crawler(settings_dict=settings))


@deferred_f_from_coro_f
async def test_outage_aborts_within_the_window_and_sends_nothing_after(demo_site):
    """A site that stops answering is aborted for its failure rate; no request leaves after the decision."""
    demo_site.reset()
    demo_site.set_faults(outage={"duration": 600, "mode": "503"})
    settings = monitor_settings(
        RESILIENCE_ABORT_FAILURE_RATE=50, RESILIENCE_ABORT_MIN_OPERATIONS=20, RESILIENCE_ABORT_WINDOW_SIZE=40
    )
    with WebhookReceiver() as receiver:
        settings["RESILIENCE_NOTIFY_URL"] = receiver.url
        crawler, sent = await crawl(ProductsSpider, settings, base=demo_site.url, count=400)
    monitor = crawler.get_extension(MonitorExtension)
    site_log = demo_site.log()
    demo_site.reset()
    crawl_stats = crawler.stats.get_stats()
    assert crawl_stats["finish_reason"] == "resilience_failure_rate"
    assert crawl_stats[stats.ABORT_REASON] == "resilience_failure_rate"
    # Judged within the window: operations are final outcomes (retries given up).
    assert 20 <= crawl_stats["retry/max_reached"] <= 40
    assert [t for t in sent.times if t > monitor.stopped_at] == []
    # Every request the site saw is one sent before the decision.
    assert len(site_log) == len(sent.times)
    (document,) = receiver.documents
    assert document["reason"] == "resilience_failure_rate"
    assert document["detail"]["failure_rate"] > 50
    assert sent.documents == [document]


@deferred_f_from_coro_f
async def test_dead_links_do_not_abort(demo_site):
    """A site with 10% dead links (404) finishes normally under a 50% failure-rate policy."""
    settings = monitor_settings(RESILIENCE_ABORT_FAILURE_RATE=50, RESILIENCE_ABORT_MIN_OPERATIONS=20)
    crawler, _ = await crawl(CatalogueSpider, settings, base=demo_site.url, pages=10)
    crawl_stats = crawler.stats.get_stats()
    assert crawl_stats["finish_reason"] == "finished"
    assert crawl_stats["downloader/response_status_count/404"] >= 10
    assert stats.ABORT_REASON not in crawl_stats


@deferred_f_from_coro_f
async def test_a_hanging_webhook_does_not_stop_the_shutdown(demo_site):
    """A webhook that never answers is given up after NOTIFY's timeout and the crawl still closes."""
    demo_site.reset()
    demo_site.set_faults(outage={"duration": 600, "mode": "reset"})
    settings = monitor_settings(RESILIENCE_ABORT_FAILURE_RATE=50, RESILIENCE_ABORT_MIN_OPERATIONS=10)
    with WebhookReceiver(hang=True) as receiver:
        settings["RESILIENCE_NOTIFY_URL"] = receiver.url
        crawler, sent = await crawl(ProductsSpider, settings, base=demo_site.url, count=100)
        assert receiver.received.is_set()
    demo_site.reset()
    assert crawler.stats.get_value("finish_reason") == "resilience_failure_rate"
    assert len(sent.documents) == 1  # the signal went out before the POST
