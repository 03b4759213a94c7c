"""One model of each site's health, in real crawls of the demo site with the add-on's defaults.

Retry-After pauses, URLs that fail on their own, outages and a dead domain
among healthy ones. Orders and counts come from the site's request log.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import scrapy
from retry_helpers import Crawl, UrlsSpider
from scrapy import signals as scrapy_signals
from scrapy.utils.test import get_crawler
from site_log import arrivals, first_at_concurrency, max_concurrency

from scrapy_resilience import stats
from scrapy_resilience.health.circuit import TRIP

# The add-on with its defaults: no shortened delays or timeouts.
ADDON: dict[str, Any] = {
    "ADDONS": {"scrapy_resilience.Addon": 500},
    "LOG_LEVEL": "INFO",
    "TELNETCONSOLE_ENABLED": False,
}
# Scrapy's defaults, written out because the assertions use them.
PER_DOMAIN = 8
PATIENT = {"patient": {"max_attempts": 12, "base_delay": 0.2, "max_delay": 1.0}}


def troubled_specs(site: Any, retry_after: bool) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, list[str]]]:
    """200 URLs, shuffled: 20 with a Retry-After (if asked), 20 failing 9 times, 10 for ever, the rest fine."""
    kinds = ["ra"] * (20 if retry_after else 0) + ["deep"] * 20 + ["never"] * 10
    kinds += ["ok"] * (200 - len(kinds))
    random.Random(12).shuffle(kinds)
    specs: list[tuple[str, dict[str, Any]]] = []
    paths: dict[str, list[str]] = {"ra": [], "deep": [], "never": [], "ok": []}
    for i, kind in enumerate(kinds):
        if kind == "ra":
            path, meta = f"/fault/retry-after-date?key=ra{i}&seconds=2&times=1&status=503", {}
        elif kind == "deep":
            path, meta = f"/fault/status/503?key=deep{i}&times=9", {"resilience_policy": "patient"}
        elif kind == "never":
            path = f"/fault/status/503?key=never{i}"
            meta = {"dont_retry": True} if len(paths["never"]) % 2 else {"max_retry_times": 1}
        else:
            path, meta = f"/fault/status/503?key=ok{i}&times=0", {}
        paths[kind].append(path)
        specs.append((site.url + path, {"meta": meta}))
    return specs, paths


class SlotDelays:
    """The download slots' delays at the close: a pause must not have become a pace."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self.delays: dict[str, float] = {}
        crawler.signals.connect(self._closed, signal=scrapy_signals.spider_closed)

    def _closed(self) -> None:
        self.delays = {key: slot.delay for key, slot in self.crawler.engine.downloader.slots.items()}


async def troubled_crawl(site: Any, retry_after: bool) -> tuple[Any, dict[str, list[str]], dict[str, float]]:
    site.reset()
    site.set_faults(slow={"fraction": 1.0, "delay": 0.05})
    specs, paths = troubled_specs(site, retry_after)
    crawler = get_crawler(UrlsSpider, {**ADDON, "RESILIENCE_RETRY_POLICIES": PATIENT})
    result, delays = Crawl(crawler), SlotDelays(crawler)
    await crawler.crawl(specs=specs)
    return result, paths, delays.delays


def by_path(log: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    return sorted((e for e in log if e["path"] == path), key=lambda e: e["t"])


@pytest_twisted.ensureDeferred
async def test_retry_after_pauses_once_and_failing_urls_get_their_schedule(demo_site: Any) -> None:
    """Retry-After dates pause the domain once each; deep failures recover; the rest goes at full speed."""
    result, paths, delays = await troubled_crawl(demo_site, retry_after=True)
    log = demo_site.log()
    ok = {r.url for r in result.spider.responses if r.status == 200}
    recoverable = paths["ra"] + paths["deep"] + paths["ok"]
    assert {demo_site.url + p for p in recoverable} <= ok  # every recoverable item
    for path in paths["ra"]:
        first, retry = by_path(log, path)
        date = math.ceil(first["t"] + 2)  # the HTTP-date is at least this far
        assert retry["t"] >= date  # no retry before the date
        # The domain paused until the date: only requests already on their way
        # to the site when the 503 came can arrive before it (the ones queued in
        # the download slot were taken back).
        assert len([e for e in log if first["done"] < e["t"] < date]) <= PER_DOMAIN
    for path in paths["deep"]:
        assert [e["status"] for e in by_path(log, path)] == [503] * 9 + [200]  # recovered at attempt 10
    never = [len(by_path(log, p)) for p in paths["never"]]
    assert sorted(never) == [1] * 5 + [2] * 5  # dont_retry, max_retry_times=1
    assert result.stat("retry/max_reached") == 5
    assert result.stat(stats.HEALTH_PAUSES) >= 1
    assert result.stat(stats.HEALTH_OPENED, 0) == 0  # failing URLs never made the site look down
    assert set(delays.values()) <= {0.0}  # the pace after every pause is the pace before


@pytest_twisted.ensureDeferred
async def test_a_pause_takes_back_the_requests_queued_in_the_download_slot(demo_site: Any) -> None:
    """Requests waiting in the slot's queue (DOWNLOAD_DELAY) when a Retry-After comes wait for its date too."""
    demo_site.reset()
    specs = [(demo_site.url + "/fault/retry-after-date?key=pause&seconds=4&times=1&status=503", {})]
    specs += [(demo_site.url + f"/fault/status/503?key=fine{i}&times=0", {}) for i in range(12)]
    crawler = get_crawler(UrlsSpider, {**ADDON, "DOWNLOAD_DELAY": 0.5, "DOWNLOAD_DELAY_JITTER": 0})
    result = Crawl(crawler)
    await crawler.crawl(specs=specs)
    log = demo_site.log()
    assert len({r.url for r in result.spider.responses if r.status == 200}) == len(specs)  # nothing lost
    first, retry = by_path(log, "/fault/retry-after-date?key=pause&seconds=4&times=1&status=503")
    date = math.ceil(first["t"] + 4)
    assert retry["t"] >= date
    assert [e["path"] for e in log if first["done"] < e["t"] < date] == []  # the queued ones waited too
    assert result.stat(stats.HEALTH_TAKEN_BACK) > 0
    assert result.stat("retry/count") == 1  # taken back is no attempt


@pytest_twisted.ensureDeferred
async def test_failing_urls_never_slow_the_healthy_pages(demo_site: Any) -> None:
    """30 URLs that fail (20 of them 9 times, under a patient policy) leave the other 170 at full speed."""
    result, paths, delays = await troubled_crawl(demo_site, retry_after=False)
    log = demo_site.log()
    healthy = [e for e in log if e["path"] in set(paths["ok"])]
    assert len(healthy) == len(paths["ok"])  # each fetched once
    assert max_concurrency(healthy) >= PER_DOMAIN - 1  # at full speed beside the failures
    # The patient policy's nine backoffs, at most (jitter only shortens them).
    backoff = sum(min(1.0, 0.2 * 2**n) for n in range(9))
    for path in paths["deep"]:
        attempts = by_path(log, path)
        assert [e["status"] for e in attempts] == [503] * 9 + [200]
        # Its own schedule, not the healthy pages' pace or anyone's pause: a few seconds of slack.
        assert attempts[-1]["t"] - attempts[0]["done"] <= backoff + 5.0
    assert result.stat(stats.HEALTH_OPENED, 0) == 0
    assert result.stat(stats.HEALTH_PAUSES, 0) == 0
    assert set(delays.values()) <= {0.0}


class ProductsSpider(scrapy.Spider):
    """Product pages 1..count of each base URL, interleaved; one item each."""

    name = "products"

    def __init__(self, bases: list[str], count: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bases, self.count = bases, count
        self.skus: dict[str, set[str]] = {base: set() for base in bases}

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for number in range(1, self.count + 1):
            for base in self.bases:
                yield scrapy.Request(f"{base}/product/{number}.html", cb_kwargs={"base": base})

    def parse(self, response: Any, base: str) -> Any:
        sku = response.css("span.sku::text").get()
        self.skus[base].add(sku)
        yield {"sku": sku, "base": base}


@pytest.mark.parametrize("mode", ["503", "refuse"])
@pytest_twisted.ensureDeferred
async def test_an_outage_loses_nothing_is_probed_politely_and_full_speed_returns_at_once(demo_site, mode):
    """An 8 s outage: nothing lost, a few probes while down, full concurrency at the site's return."""
    demo_site.reset()
    demo_site.set_faults(slow={"fraction": 1.0, "delay": 0.15})
    start = time.time() + 1.5
    demo_site.set_faults(outage={"start": start, "duration": 8, "mode": mode})
    crawler = get_crawler(ProductsSpider, ADDON)
    result = Crawl(crawler)
    await crawler.crawl(bases=[demo_site.url], count=300)
    log = demo_site.log()
    end = start + 8
    live = {str(n) for n in range(1, 301)} - {str(n) for n in demo_site.info()["dead"]}
    assert result.spider.skus[demo_site.url] == live  # nothing lost
    assert result.stat("retry/max_reached") == 0
    during = [e for e in log if start <= e["t"] < end]
    assert during, "the outage met the crawl"
    probes = result.stat(stats.HEALTH_PROBES)
    # Polite: until the circuit opens, at most the TRIP failures that open it
    # and what was transferring when it opened (PER_DOMAIN); then the probes.
    # Each at most twice: Twisted sends a request once more on a new
    # connection when its kept-alive one is reset.
    assert len(during) <= 2 * (TRIP + PER_DOMAIN) + 2 * probes
    assert probes <= 5  # 1, 2, 4 s apart (then 8 s): three or four in 8 s
    back = arrivals(log, after=end)
    # Back at full speed at once: the first request after the probe that
    # found the site back already finds PER_DOMAIN open.
    index = first_at_concurrency(back, PER_DOMAIN)
    assert index is not None and index <= PER_DOMAIN + 2


@pytest_twisted.ensureDeferred
async def test_a_dead_domain_holds_no_healthy_one_back_and_stays_resumable(start_demo_site, tmp_path):
    """One dead domain of three: the two others are crawled at full speed; its requests stay pending."""
    site = start_demo_site("--host", "127.0.0.1", "--host", "127.0.0.2", "--host", "127.0.0.3", "--dead-links", "0")
    bases = [f"http://127.0.0.{n}:{site.port}" for n in (1, 2, 3)]
    site.set_faults(slow={"fraction": 1.0, "delay": 0.05})
    death = time.time() + 1.0
    site.set_faults(outage={"start": death, "duration": 3600, "mode": "refuse", "hosts": ["127.0.0.3"]})
    job = tmp_path / "job"
    settings = {
        **ADDON,
        "RESILIENCE_CHECKPOINT_DIR": str(job),
        "RESILIENCE_ABORT_FAILURE_RATE": 50,
        # Shortened so that the crawl ends by itself once the healthy domains are done.
        "RESILIENCE_ABORT_WINDOW_DURATION": 20,
    }
    crawler = get_crawler(ProductsSpider, settings)
    await crawler.crawl(bases=bases, count=100)
    spider: Any = crawler.spider
    assert crawler.stats.get_value("finish_reason") == "resilience_failure_rate"
    # The healthy domains were all crawled before the abort, at full speed.
    log = site.log()
    for base, host in zip(bases[:2], ("127.0.0.1", "127.0.0.2"), strict=True):
        assert len(spider.skus[base]) == 100
        assert max_concurrency(arrivals(log, host=host, after=death)) >= PER_DOMAIN - 1
    dead_after = arrivals(log, host="127.0.0.3", after=death)
    assert len(dead_after) <= 100  # one window at most
    got = len(spider.skus[bases[2]])
    assert got < 100
    # The site is back: the resumed job fetches what the dead domain owed, and nothing else.
    site.set_faults(outage=None)
    site.reset()
    again = get_crawler(ProductsSpider, settings)
    await again.crawl(bases=bases, count=100)
    assert again.stats.get_value("finish_reason") == "finished"
    assert len(again.spider.skus[bases[2]]) + got >= 100
    assert spider.skus[bases[2]] | again.spider.skus[bases[2]] == {str(n) for n in range(1, 101)}
    assert all(e["host"] == "127.0.0.3" for e in site.log())


@pytest_twisted.ensureDeferred
async def test_healthy_domain_keeps_its_pace_while_another_is_paused(demo_site: Any) -> None:
    """While 127.0.0.1 waits out a Retry-After, every page of 127.0.0.2 is fetched."""
    demo_site.reset()
    specs = [(demo_site.url + "/fault/status/429?key=cool&times=1&retry_after=4", {})]
    specs += [(demo_site.url2 + f"/product/{k}.html", {}) for k in range(1, 25)]
    crawler = get_crawler(UrlsSpider, {**ADDON, "HTTPERROR_ALLOW_ALL": True})
    result = Crawl(crawler)
    await crawler.crawl(specs=specs)
    log = demo_site.log()
    sick = [e for e in log if e["path"].startswith("/fault/status/429")]
    healthy = [e for e in log if e["host"] == "127.0.0.2"]
    assert len(healthy) == 24
    first_429 = min(e["t"] for e in sick if e["status"] == 429)
    first_retry = min(e["t"] for e in sick if e["status"] == 200)
    assert first_retry - first_429 >= 4.0
    # The healthy domain did not wait for the other one's pause.
    assert max(e["t"] for e in healthy) < first_retry
    assert result.stat(stats.COOLDOWN_DOMAINS) == 1
    assert result.stat(stats.HEALTH_PAUSES) == 1
