"""The monitor extension in real crawls of the demo site: abort policy, webhook, thresholds."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import scrapy
from checkpoint_helpers import Crawl, stats_of
from scrapy import signals as scrapy_signals
from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler
from scrapy.exceptions import NotConfigured
from scrapy.http import Request, Response
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from scrapy.utils.test import get_crawler
from webhook_receiver import WebhookReceiver

from scrapy_resilience import signals, stats
from scrapy_resilience.cli.jobview import open_store, progress_of
from scrapy_resilience.monitor.extension import MonitorExtension
from scrapy_resilience.monitor.outcome import OUTCOME_ORDER, OutcomeMiddleware

CHECKPOINT_SPIDER = Path(__file__).parents[1] / "checkpoint_spider.py"


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


# Sent by WireHandler as each request goes on the wire.
on_the_wire = object()


class WireHandler(HTTP11DownloadHandler):
    """Scrapy's HTTP handler, telling when a request leaves its download slot's queue for the wire."""

    async def download_request(self, request: Request) -> Response:
        self.crawler.signals.send_catch_log(on_the_wire, request=request)
        return await super().download_request(request)


def monitor_settings(**extra: Any) -> dict[str, Any]:
    settings = {
        "EXTENSIONS": {MonitorExtension: 0},
        "DOWNLOADER_MIDDLEWARES": {OutcomeMiddleware: OUTCOME_ORDER},
        "DOWNLOAD_HANDLERS": {"http": WireHandler},
        "RESILIENCE_MONITOR_INTERVAL": 0.5,
        # One transfer at a time: the other requests wait in the engine's
        # scheduler or in the download slot's queue.
        "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        "RETRY_TIMES": 1,
        "LOG_LEVEL": "INFO",
        "TELNETCONSOLE_ENABLED": False,
    }
    settings.update(extra)
    return settings


class Sent:
    """Counts the requests put on the wire, and those put on it after the monitor decided to stop."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self.on_the_wire = 0
        self.after_the_decision: list[str] = []
        self.documents: list[dict[str, Any]] = []
        crawler.signals.connect(self.wired, signal=on_the_wire)
        crawler.signals.connect(self.aborted, signal=signals.abort_triggered)

    def wired(self, request: Any) -> None:
        self.on_the_wire += 1
        if self.crawler.get_extension(MonitorExtension).stopping:
            self.after_the_decision.append(request.url)

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


# Scrapy's own retries, or the whole add-on (our retries hold backoffs outside the downloader).
WIRINGS = {
    # A delay between transfers keeps requests waiting in the download slot's
    # queue: without one, the site's instant 503s drain the queue about as fast
    # as the engine fills it, and at the decision it held one request or none.
    "components": {"DOWNLOAD_DELAY": 0.02, "DOWNLOAD_DELAY_JITTER": 0},
    "addon": {
        "ADDONS": {"scrapy_resilience.Addon": 500},
        "RESILIENCE_RETRY_MAX_ATTEMPTS": 2,
        "RESILIENCE_RETRY_BASE_DELAY": 0.1,
        "RESILIENCE_RETRY_MAX_DELAY": 0.1,
    },
}


@pytest.mark.parametrize("wiring", sorted(WIRINGS))
@deferred_f_from_coro_f
async def test_outage_aborts_within_the_window_and_sends_nothing_after(demo_site, wiring):
    """A site that stops answering is aborted for its failure rate; no request leaves after the decision."""
    demo_site.reset()
    demo_site.set_faults(outage={"duration": 600, "mode": "503"})
    settings = monitor_settings(
        RESILIENCE_ABORT_FAILURE_RATE=50,
        RESILIENCE_ABORT_MIN_OPERATIONS=20,
        RESILIENCE_ABORT_WINDOW_SIZE=40,
        **WIRINGS[wiring],
    )
    with WebhookReceiver() as receiver:
        settings["RESILIENCE_NOTIFY_URL"] = receiver.url
        crawler, sent = await crawl(ProductsSpider, settings, base=demo_site.url, count=100)
    site_log = demo_site.log()
    demo_site.reset()
    crawl_stats = crawler.stats.get_stats()
    assert crawl_stats["finish_reason"] == "resilience_failure_rate"
    assert crawl_stats[stats.ABORT_REASON] == "resilience_failure_rate"
    if wiring == "components":
        # Judged within the window: operations are final outcomes (retries given up).
        assert 20 <= crawl_stats["retry/max_reached"] <= 40
        # Requests waiting in the download slot's queue were refused (and counted).
        assert crawl_stats[stats.ABORT_BLOCKED] >= 1
    else:
        # The add-on judged the site down: its requests waited, keeping their
        # attempts, and the turns they lost to the outage were the operations.
        assert crawl_stats[stats.HEALTH_OPENED] >= 1
        assert crawl_stats.get("retry/max_reached", 0) <= 12
    # Nothing left a download slot's queue for the wire after the decision (with
    # the add-on nothing even waits there: the requests of a site that is down
    # wait outside the downloader).
    assert sent.after_the_decision == []
    # Every request the site saw is one put on the wire before the decision.
    assert len(site_log) == sent.on_the_wire
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


class LeakySpider(CatalogueSpider):
    """The catalogue spider with a leak: every product page adds ``leak_mb`` MB it never frees."""

    name = "leaky"

    def parse_product(self, response):
        self.__dict__.setdefault("hoard", []).append(b"x" * int(float(self.leak_mb) * 1024 * 1024))
        yield from super().parse_product(response)


@deferred_f_from_coro_f
async def test_memory_leak_closes_after_a_checkpoint_and_a_rerun_finishes(demo_site, tmp_path):
    """A leaking crawl closes with resilience_memory_exceeded after a checkpoint; a rerun resumes with nothing lost."""
    from scrapy_resilience import Addon
    from scrapy_resilience.monitor.resources import Sampler

    def over_now(megabytes: int) -> int:
        return int(Sampler(os.getpid(), None).read_blocking().memory_mb) + megabytes

    settings = {
        "ADDONS": {Addon: 500},
        "RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job"),
        "RESILIENCE_MONITOR_INTERVAL": 0.2,
        "RESILIENCE_MEMORY_MB": over_now(80),
        "DOWNLOAD_DELAY": 0.02,  # a few seconds of crawl: time for two readings over the limit
        "LOG_LEVEL": "INFO",
        "TELNETCONSOLE_ENABLED": False,
    }
    first = get_crawler(LeakySpider, settings_dict=settings)
    first_items = Items(first)
    await maybe_deferred_to_future(first.crawl(base=demo_site.url, pages=10, leak_mb=2))
    assert first.stats.get_value("finish_reason") == "resilience_memory_exceeded"
    assert first.stats.get_value(stats.threshold_tripped("RESILIENCE_MEMORY_MB")) >= 2
    assert first.stats.get_value(stats.CHECKPOINT_COUNT) >= 1
    assert len(first_items.skus) < 180  # closed mid-crawl
    del first.spider.hoard

    # A supervisor's rerun is a fresh process: the limit is as far above its start.
    second = get_crawler(LeakySpider, settings_dict={**settings, "RESILIENCE_MEMORY_MB": over_now(80)})
    second_items = Items(second)
    await maybe_deferred_to_future(second.crawl(base=demo_site.url, pages=10, leak_mb=0))
    assert second.stats.get_value("finish_reason") == "finished"
    assert second.stats.get_value(stats.RESUME_COUNT) == 1
    dead = set(demo_site.info()["dead"])
    assert first_items.skus | second_items.skus == {str(n) for n in range(1, 201) if n not in dead}


class Items:
    def __init__(self, crawler: Any) -> None:
        self.skus: set[str] = set()
        crawler.signals.connect(self.item, signal=scrapy_signals.item_scraped)

    def item(self, item: dict[str, str]) -> None:
        self.skus.add(item["sku"])


def test_runs_that_died_without_progress_abort_the_next_run_before_any_request(scrapy_project_env, demo_site, tmp_path):
    """After N runs that died at start-up (no progress, nothing in flight), the next run aborts and sends nothing."""
    site = ("-a", f"site={demo_site.url}")
    dying = Crawl(scrapy_project_env, tmp_path, "runspider", str(CHECKPOINT_SPIDER), *site, "-a", "die_in_start=1")
    for _ in range(2):
        dying.run(timeout=120)
        assert dying.runs[-1].returncode == 70, dying.log()[-3000:]
    demo_site.reset()
    crawl = Crawl(scrapy_project_env, tmp_path, "runspider", str(CHECKPOINT_SPIDER), *site)
    final = stats_of(crawl.run(timeout=120, RESILIENCE_ABORT_CONSECUTIVE_CRASHES=2))
    assert final["finish_reason"] == "resilience_consecutive_crashes", crawl.log()[-3000:]
    assert final[stats.ABORT_REASON] == "resilience_consecutive_crashes"
    assert final[stats.RESUME_CRASHES] == 2
    assert demo_site.log() == []  # not one request reached the site
    assert final[stats.ABORT_BLOCKED] >= 1  # the first request was refused at the middleware


@pytest.mark.parametrize(
    ("setting", "limit", "reason"),
    [
        ("RESILIENCE_DISK_SPACE_MB", 10**9, "resilience_disk_space"),
        ("RESILIENCE_NETWORK_CONNECTIONS", 1, "resilience_network_connections"),
    ],
)
@deferred_f_from_coro_f
async def test_threshold_closes_after_a_warning_and_a_checkpoint(demo_site, tmp_path, setting, limit, reason):
    """A threshold crossed at two readings in a row closes the crawl with its reason after a checkpoint."""
    from scrapy_resilience import Addon

    settings = {
        "ADDONS": {Addon: 500},
        "RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job"),
        "RESILIENCE_MONITOR_INTERVAL": 0.2,
        setting: limit,
        "DOWNLOAD_DELAY": 0.02,
        "LOG_LEVEL": "INFO",
        "TELNETCONSOLE_ENABLED": False,
    }
    crawler = get_crawler(CatalogueSpider, settings_dict=settings)
    tripped: list[str] = []
    crawler.signals.connect(lambda threshold: tripped.append(threshold), signal=signals.threshold_tripped, weak=False)
    await maybe_deferred_to_future(crawler.crawl(base=demo_site.url, pages=10))
    assert crawler.stats.get_value("finish_reason") == reason
    assert tripped == [setting, setting]
    assert crawler.stats.get_value(stats.CHECKPOINT_COUNT) >= 1
    assert crawler.stats.get_value(stats.failures("system")) >= 2  # the warning and the abort


@deferred_f_from_coro_f
async def test_without_shutdown_the_policy_only_reports(demo_site):
    """With RESILIENCE_ABORT_ACTIONS lacking shutdown, the abort is logged and notified once and the crawl goes on."""
    demo_site.reset()
    demo_site.set_faults(outage={"duration": 600, "mode": "503"})
    settings = monitor_settings(
        RESILIENCE_ABORT_FAILURE_RATE=50,
        RESILIENCE_ABORT_MIN_OPERATIONS=10,
        RESILIENCE_ABORT_ACTIONS="log_event,notify",
    )
    crawler, sent = await crawl(ProductsSpider, settings, base=demo_site.url, count=60)
    demo_site.reset()
    monitor = crawler.get_extension(MonitorExtension)
    assert crawler.stats.get_value("finish_reason") == "finished"
    assert crawler.stats.get_value(stats.ABORT_REASON) == "resilience_failure_rate"
    assert len(sent.documents) == 1
    assert crawler.stats.get_value("retry/max_reached") == 60  # every request was still tried
    assert crawler.stats.get_value(stats.failures("external")) == 1  # the one CRITICAL event
    assert monitor.stopped_at is not None


@deferred_f_from_coro_f
async def test_a_refusing_webhook_does_not_break_the_shutdown(demo_site):
    """A webhook URL where nothing listens fails the NOTIFY step only; the crawl still closes with its reason."""
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        closed_port = placeholder.getsockname()[1]  # free again once closed: nothing listens there
    demo_site.reset()
    demo_site.set_faults(outage={"duration": 600, "mode": "503"})
    settings = monitor_settings(
        RESILIENCE_ABORT_FAILURE_RATE=50,
        RESILIENCE_ABORT_MIN_OPERATIONS=10,
        RESILIENCE_NOTIFY_URL=f"http://127.0.0.1:{closed_port}/hook",
    )
    crawler, sent = await crawl(ProductsSpider, settings, base=demo_site.url, count=60)
    demo_site.reset()
    assert crawler.stats.get_value("finish_reason") == "resilience_failure_rate"
    assert len(sent.documents) == 1


HANGING_SPIDER = """
import asyncio

import scrapy


class HangingSpider(scrapy.Spider):
    name = "hanging"

    async def start(self):
        yield scrapy.Request(self.base + "/", self.parse_forever)

    async def parse_forever(self, response):
        # Requests to a site that only fails, then a callback that never returns.
        for number in range(30):
            yield scrapy.Request(self.base + "/fault/status/503?key=hanging-" + str(number))
        await asyncio.Future()
"""


def test_a_close_that_hangs_is_forced_after_the_shutdown_timeout(scrapy_project_env, demo_site, tmp_path):
    """A callback that never returns cannot keep an aborted crawl alive: past the timeout the process stops."""
    spider_file = tmp_path / "hanging.py"
    spider_file.write_text(HANGING_SPIDER)
    job = tmp_path / "job"
    settings = {
        "RESILIENCE_CHECKPOINT_DIR": str(job),
        "RESILIENCE_ABORT_FAILURE_RATE": 50,
        "RESILIENCE_ABORT_MIN_OPERATIONS": 10,
        "RESILIENCE_RETRY_MAX_ATTEMPTS": 1,
        "RESILIENCE_ABORT_SHUTDOWN_TIMEOUT": 3,
    }
    # Bounded: without the forced stop this run never ends and the timeout fails the test.
    result = scrapy_project_env.run(
        "runspider", str(spider_file), "-a", f"base={demo_site.url}", settings=settings, timeout=120
    )
    log = result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "Closing spider (resilience_failure_rate)" in log
    assert "The graceful close (resilience_failure_rate) did not finish within 3s: forcing the stop" in log
    assert "'shutdown': 'forced'" in log
    # The stats are dumped with the close reason, as at a normal close.
    assert "'finish_reason': 'resilience_failure_rate'" in log
    assert "Spider closed" not in log  # the graceful close never finished
    # The final checkpoint of SAVE_STATE is there to resume from, with the requests not done.
    loaded = open_store(job).load_latest()
    assert loaded is not None
    assert progress_of(loaded.checkpoint)["pending"] >= 1
    # ... and it names the reason, which the supervisor reads when the close never finished.
    assert loaded.checkpoint.data.job_state["close_reason"] == "resilience_failure_rate"
