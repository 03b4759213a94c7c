"""The retry middleware in real crawls against the demo site."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import pytest_twisted
from chromium import LAUNCH_OPTIONS
from retry_helpers import CatalogueSpider, UrlsSpider, crawl, hits, loopback_only_resolver
from scrapy.exceptions import NotConfigured
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.test import get_crawler

from scrapy_resilience import signals as resilience_signals
from scrapy_resilience import stats, testing
from scrapy_resilience.exceptions import ConfigError
from scrapy_resilience.model.entities import FailureCategory, RecoveryAction
from scrapy_resilience.retry.middleware import RetryMiddleware


def _statuses(site: Any, prefix: str) -> list[int]:
    return [entry["status"] for entry in hits(site, prefix)]


@pytest_twisted.ensureDeferred
async def test_transient_status_retried_until_success(demo_site: Any) -> None:
    """A 503 twice, then 200: three attempts, the page reaches the callback, Scrapy's stats count it."""
    demo_site.reset()
    url = demo_site.url + "/fault/status/503?key=t1&times=2"
    result = await crawl([(url, {})])
    assert _statuses(demo_site, "/fault/status/503?key=t1") == [503, 503, 200]
    assert [r.status for r in result.spider.responses] == [200]
    assert result.spider.failures == []  # a held retry never reaches the errback
    assert result.stat("retry/count") == 2
    assert result.stat("retry/reason_count/503 Service Unavailable") == 2
    assert result.stat(stats.RETRY_SCHEDULED) == 2
    assert result.stat(stats.RETRY_DELAY_SECONDS) > 0
    assert result.stat(stats.RETRY_HELD) == 0
    assert result.stat(stats.failures("external")) == 2
    correlation = {event.correlation_id for event in result.events}
    assert len(correlation) == 1 and "" not in correlation
    assert all(event.recovery_action is RecoveryAction.RETRY for event in result.events)


@pytest_twisted.ensureDeferred
async def test_connection_reset_retried(demo_site: Any) -> None:
    """A reset connection is transient: retried until the page loads."""
    demo_site.reset()
    result = await crawl([(demo_site.url + "/fault/reset?key=r1&times=2", {})])
    assert [r.status for r in result.spider.responses] == [200]
    assert result.stat(stats.failures("network")) == 2


@pytest_twisted.ensureDeferred
async def test_retry_after_delta_seconds_is_honoured(demo_site: Any) -> None:
    """No retry reaches the server before its Retry-After; the spider stays open meanwhile."""
    demo_site.reset()
    result = await crawl([(demo_site.url + "/fault/status/429?key=ra1&times=1&retry_after=2", {})])
    first, second = hits(demo_site, "/fault/status/429?key=ra1")
    assert (first["status"], second["status"]) == (429, 200)
    assert second["t"] - first["t"] >= 2.0
    assert [r.status for r in result.spider.responses] == [200]
    assert result.stat(stats.RETRY_DELAY_SECONDS) >= 2.0


@pytest_twisted.ensureDeferred
async def test_retry_after_http_date_is_honoured(demo_site: Any) -> None:
    """An HTTP-date Retry-After holds the retry until that date."""
    demo_site.reset()
    result = await crawl([(demo_site.url + "/fault/retry-after-date?key=rd1&seconds=2&times=1", {})])
    first, second = hits(demo_site, "/fault/retry-after-date?key=rd1")
    assert (first["status"], second["status"]) == (429, 200)
    # The server dated the header ceil(its clock + 2) while handling the first request.
    assert second["t"] >= math.ceil(first["t"] + 2.0)
    assert [r.status for r in result.spider.responses] == [200]


@pytest_twisted.ensureDeferred
async def test_retry_after_above_cap_waits_the_cap(demo_site: Any) -> None:
    """A Retry-After longer than RESILIENCE_RETRY_AFTER_MAX is waited for the cap, then retried."""
    demo_site.reset()
    settings = {"RESILIENCE_RETRY_AFTER_MAX": 1}
    result = await crawl([(demo_site.url + "/fault/status/503?key=cap1&times=1&retry_after=3600", {})], settings)
    first, second = hits(demo_site, "/fault/status/503?key=cap1")
    assert second["t"] - first["t"] >= 1.0
    assert [r.status for r in result.spider.responses] == [200]


@pytest_twisted.ensureDeferred
async def test_permanent_status_gets_one_attempt(demo_site: Any) -> None:
    """A 404 is permanent: one attempt, no retry stats, one FailureEvent."""
    demo_site.reset()
    settings = {"HTTPERROR_ALLOW_ALL": True}
    result = await crawl([(demo_site.url + "/fault/status/404?key=p1", {})], settings)
    assert _statuses(demo_site, "/fault/status/404?key=p1") == [404]
    assert result.stat("retry/count") == 0
    assert result.stat(stats.RETRY_PERMANENT) == 1
    [event] = result.events
    assert event.recovery_action is RecoveryAction.SKIP and event.context["status"] == 404


@pytest_twisted.ensureDeferred
async def test_unresolvable_host_gets_one_attempt(demo_site: Any) -> None:
    """A DNS name that does not exist is permanent: one attempt, the errback sees it."""
    with loopback_only_resolver():
        result = await crawl([("http://no-such-host.invalid/", {})])
    [failure] = result.spider.failures
    assert type(failure.value).__name__ == "CannotResolveHostError"
    assert result.stat("retry/count") == 0
    assert result.stat(stats.RETRY_PERMANENT) == 1
    [event] = result.events
    assert event.category is FailureCategory.NETWORK


@pytest_twisted.ensureDeferred
async def test_gives_up_after_max_attempts(demo_site: Any) -> None:
    """A page that always fails is tried max_attempts times, then given up with a FailureEvent."""
    demo_site.reset()
    settings = {"RESILIENCE_RETRY_MAX_ATTEMPTS": 3}
    result = await crawl([(demo_site.url + "/fault/status/500?key=g1", {})], settings)
    assert _statuses(demo_site, "/fault/status/500?key=g1") == [500, 500, 500]
    assert result.stat("retry/max_reached") == 1
    assert result.stat(stats.RETRY_GAVE_UP) == 1
    assert result.events[-1].message.startswith("gave up")
    assert result.events[-1].context["gave_up_after"] == 3
    assert len({event.correlation_id for event in result.events}) == 1


@pytest_twisted.ensureDeferred
async def test_meta_dont_retry_and_max_retry_times_win(demo_site: Any) -> None:
    """Scrapy's dont_retry and max_retry_times keep their meaning, over the policy."""
    demo_site.reset()
    specs = [
        (demo_site.url + "/fault/status/503?key=m1", {"meta": {"dont_retry": True}}),
        (demo_site.url + "/fault/status/503?key=m2", {"meta": {"max_retry_times": 1}}),
    ]
    await crawl(specs, {"RESILIENCE_RETRY_MAX_ATTEMPTS": 5})
    assert len(hits(demo_site, "/fault/status/503?key=m1")) == 1
    assert len(hits(demo_site, "/fault/status/503?key=m2")) == 2


@pytest_twisted.ensureDeferred
async def test_post_not_retried_unless_opted_in(demo_site: Any) -> None:
    """A POST is not idempotent: not retried, unless meta resilience_retry_unsafe is set."""
    demo_site.reset()
    specs = [
        (demo_site.url + "/fault/status/503?key=post1&times=1", {"method": "POST", "body": b"x"}),
        (
            demo_site.url + "/fault/status/503?key=post2&times=1",
            {"method": "POST", "body": b"x", "meta": {"resilience_retry_unsafe": True}},
        ),
    ]
    result = await crawl(specs)
    assert _statuses(demo_site, "/fault/status/503?key=post1") == [503]
    assert _statuses(demo_site, "/fault/status/503?key=post2") == [503, 200]
    [event] = [event for event in result.events if "key=post1" in event.context["url"]]
    assert "not idempotent" in event.context["not_retried"]


@pytest_twisted.ensureDeferred
async def test_named_policy_and_unknown_policy(demo_site: Any) -> None:
    """meta resilience_policy picks a named policy; an unknown name fails the request with ConfigError."""
    demo_site.reset()
    settings = {"RESILIENCE_RETRY_POLICIES": {"once": {"max_attempts": 1}}}
    specs = [
        (demo_site.url + "/fault/status/500?key=pol1", {"meta": {"resilience_policy": "once"}}),
        (demo_site.url + "/fault/status/500?key=pol2", {"meta": {"resilience_policy": "nope"}}),
    ]
    result = await crawl(specs, settings)
    assert len(hits(demo_site, "/fault/status/500?key=pol1")) == 1
    assert hits(demo_site, "/fault/status/500?key=pol2") == []
    [failure] = [f for f in result.spider.failures if not f.check(HttpError)]
    assert isinstance(failure.value, ConfigError) and "once" in str(failure.value)
    assert result.stat(stats.failures("application")) == 1


@pytest_twisted.ensureDeferred
async def test_testing_mode_turns_waits_off(demo_site: Any) -> None:
    """In testing mode a long Retry-After is not waited for and attempts can be capped."""
    demo_site.reset()
    url = demo_site.url + "/fault/status/503?key=tm1&times=5&retry_after=600"
    with testing.testing_mode(attempts=3):
        result = await crawl([(url, {})], {"HTTPERROR_ALLOW_ALL": True})
    assert testing.is_testing() is False
    assert _statuses(demo_site, "/fault/status/503?key=tm1") == [503, 503, 503]
    assert result.stat(stats.RETRY_DELAY_SECONDS) == 0
    assert result.stat(stats.RETRY_GAVE_UP) == 1


def test_not_configured_when_disabled() -> None:
    """RESILIENCE_RETRY_ENABLED=False (or RESILIENCE_ENABLED=False) disables the middleware."""
    for name in ("RESILIENCE_RETRY_ENABLED", "RESILIENCE_ENABLED"):
        with pytest.raises(NotConfigured):
            RetryMiddleware.from_crawler(get_crawler(settings_dict={name: False}))


def test_policy_with_cap_below_base_delay_is_a_config_error() -> None:
    """A named policy whose max_delay is below its base_delay stops the crawl at start-up."""
    settings = {"RESILIENCE_RETRY_POLICIES": {"bad": {"base_delay": 5, "max_delay": 1}}}
    with pytest.raises(ConfigError, match="RESILIENCE_RETRY_POLICIES"):
        RetryMiddleware.from_crawler(get_crawler(settings_dict=settings))


@pytest_twisted.ensureDeferred
async def test_outage_in_the_middle_loses_no_page(demo_site: Any) -> None:
    """A 20-second outage (503s) in the middle of a crawl loses no page with the default policy."""
    demo_site.reset()
    demo_site.set_faults(outage={"start": time.time() + 2.0, "duration": 20, "mode": "503"})
    settings = {
        "RESILIENCE_RETRY_BASE_DELAY": 1.0,  # the defaults, stated: this test is about them
        "RESILIENCE_RETRY_MAX_DELAY": 60.0,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        "DOWNLOAD_DELAY": 0.1,
    }
    result = await crawl([(demo_site.url, {})], settings, spidercls=CatalogueSpider)
    spider = result.spider
    assert 503 in _statuses(demo_site, "/")  # the outage did hit the crawl
    assert len(spider.list_pages) == 5
    assert len(spider.live_links) > 80
    assert spider.products == spider.live_links
    assert result.stat(stats.RETRY_GAVE_UP) == 0 and result.stat("retry/max_reached") == 0


@pytest_twisted.ensureDeferred
async def test_hold_api_and_request_held_signal(demo_site: Any) -> None:
    """hold() keeps a request out until not_before, lists it in held_requests() and sends request_held."""
    demo_site.reset()
    signalled: list[tuple[str, float]] = []
    listed: list[list[tuple[str, float]]] = []
    not_before = time.time() + 1.5

    def on_held(request: Any, not_before: float) -> None:
        signalled.append((request.url, not_before))

    class HoldingSpider(UrlsSpider):
        def parse(self, response: Any) -> None:
            super().parse(response)
            if response.url.endswith("key=first"):
                middleware = self.crawler.get_downloader_middleware(RetryMiddleware)
                self.crawler.signals.connect(on_held, signal=resilience_signals.request_held)
                middleware.hold(
                    response.request.replace(url=demo_site.url2 + "/fault/slow?delay=0&key=held"), not_before
                )
                listed.append([(request.url, when) for request, when in middleware.held_requests()])

    result = await crawl([(demo_site.url + "/fault/slow?delay=0&key=first", {})], spidercls=HoldingSpider)
    held_url = demo_site.url2 + "/fault/slow?delay=0&key=held"
    assert signalled == [(held_url, not_before)]
    assert listed == [[(held_url, not_before)]]
    assert result.crawler.get_downloader_middleware(RetryMiddleware).held_requests() == []
    _first, held = hits(demo_site, "/fault/slow")
    assert held["host"] == "127.0.0.2" and held["t"] >= not_before
    assert len(result.spider.responses) == 2  # the spider stayed open for the held request


PLAYWRIGHT = {
    "DOWNLOAD_HANDLERS": {
        "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
        "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
    },
    "PLAYWRIGHT_LAUNCH_OPTIONS": LAUNCH_OPTIONS,
    "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": 1000,
}


@pytest_twisted.ensureDeferred
async def test_playwright_timeout_is_retried(demo_site: Any) -> None:
    """A Playwright navigation TimeoutError (real Chromium) is transient: retried, then given up."""
    demo_site.reset()
    settings = {**PLAYWRIGHT, "RESILIENCE_RETRY_MAX_ATTEMPTS": 2}
    url = demo_site.url + "/fault/slow?delay=3&key=pw1"
    result = await crawl([(url, {"meta": {"playwright": True}})], settings)
    # (The site logs a request when it answers, after the crawl here: count with Scrapy's stats.)
    assert result.stat("retry/reason_count/playwright._impl._errors.TimeoutError") == 1
    assert result.stat("retry/max_reached") == 1
    assert {event.category for event in result.events} == {FailureCategory.BROWSER}
    [failure] = result.spider.failures
    assert type(failure.value).__name__ == "TimeoutError"


def test_testing_mode_context_restores_and_validates() -> None:
    """testing_mode() nests and restores the previous mode; attempts below 1 are refused."""
    with pytest.raises(ValueError, match="at least 1"):
        testing.set_testing(True, attempts=0)
    with testing.testing_mode(attempts=4):
        assert testing.max_attempts(8) == 4
        with testing.testing_mode():
            assert testing.max_attempts(8) == 8
        assert testing.is_testing() and testing.max_attempts(8) == 4
    assert not testing.is_testing() and testing.max_attempts(8) == 8
