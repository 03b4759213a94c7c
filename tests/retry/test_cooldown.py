"""Per-domain cooldown: one slot slows down and recovers, the others keep their pace."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from retry_helpers import crawl, hits
from scrapy import Request
from scrapy.core.downloader import Downloader, Slot
from scrapy.utils.test import get_crawler

from scrapy_resilience import stats
from scrapy_resilience.retry.cooldown import FAILURE_RUN, RUN_CEILING, DomainCooldown


@pytest.fixture
def downloader() -> Downloader:
    """A real downloader with two idle slots, ``a`` and ``b``, of delay 0."""
    crawler = get_crawler()
    crawler.stats.open_spider()  # type: ignore[union-attr]
    downloader = Downloader(crawler)
    for key in ("a", "b"):
        downloader.slots[key] = Slot(concurrency=8, delay=0.0, jitter=0.0)
    return downloader


def _request(slot: str) -> Request:
    return Request(f"http://{slot}.example/", meta={"download_slot": slot})


def _cooldown(downloader: Downloader) -> DomainCooldown:
    return DomainCooldown(downloader.crawler.stats, base_delay=1.0, max_delay=60.0, retry_after_max=300.0)


def test_retry_after_slows_only_its_slot(downloader: Downloader) -> None:
    """A Retry-After sets its slot's delay (capped); the other slot keeps delay 0."""
    cooldown = _cooldown(downloader)
    cooldown.failure(downloader, _request("a"), 30.0)
    assert downloader.slots["a"].delay == 30.0
    assert downloader.slots["b"].delay == 0.0
    cooldown.failure(downloader, _request("a"), 10_000.0)
    assert downloader.slots["a"].delay == 300.0
    assert cooldown.cooling() == ["a"]
    assert downloader.crawler.stats.get_value(stats.COOLDOWN_DOMAINS) == 1  # type: ignore[union-attr]


def test_run_of_failures_slows_the_slot_progressively(downloader: Downloader) -> None:
    """Below FAILURE_RUN failures nothing changes; then base_delay, doubling per failure, up to the ceiling."""
    cooldown = _cooldown(downloader)
    delays = []
    for _ in range(FAILURE_RUN + 10):
        cooldown.failure(downloader, _request("a"), None)
        delays.append(downloader.slots["a"].delay)
    assert delays[: FAILURE_RUN - 1] == [0.0] * (FAILURE_RUN - 1)
    assert delays[FAILURE_RUN - 1 : FAILURE_RUN + 2] == [1.0, 2.0, 4.0]
    assert delays == sorted(delays) and delays[-1] == RUN_CEILING * 1.0


def test_successes_lift_the_slowdown_gradually(downloader: Downloader) -> None:
    """Each success halves the extra delay, then the cooldown ends at the slot's own delay."""
    cooldown = _cooldown(downloader)
    cooldown.failure(downloader, _request("a"), 8.0)
    lifted = []
    while cooldown.cooling():
        cooldown.success(downloader, _request("a"))
        lifted.append(downloader.slots["a"].delay)
    assert lifted == [4.0, 2.0, 1.0, 0.5, 0.0]


def test_a_success_resets_the_failure_run(downloader: Downloader) -> None:
    """Failures separated by successes never add up to a run."""
    cooldown = _cooldown(downloader)
    for _ in range(10):
        for _ in range(FAILURE_RUN - 1):
            cooldown.failure(downloader, _request("a"), None)
        cooldown.success(downloader, _request("a"))
    assert downloader.slots["a"].delay == 0.0 and cooldown.cooling() == []


def test_shorter_retry_after_never_lowers_a_delay(downloader: Downloader) -> None:
    """A failure never shortens a slot's delay."""
    cooldown = _cooldown(downloader)
    cooldown.failure(downloader, _request("a"), 20.0)
    cooldown.failure(downloader, _request("a"), 2.0)
    assert downloader.slots["a"].delay == 20.0


@pytest_twisted.ensureDeferred
async def test_healthy_domain_keeps_its_pace_while_another_cools(demo_site: Any) -> None:
    """While 127.0.0.1 waits out a Retry-After, every page of 127.0.0.2 is fetched."""
    demo_site.reset()
    specs = [(demo_site.url + "/fault/status/429?key=cool&times=1&retry_after=4", {})]
    specs += [(demo_site.url2 + f"/product/{k}.html", {}) for k in range(1, 25)]
    result = await crawl(specs, {"HTTPERROR_ALLOW_ALL": True})
    sick = hits(demo_site, "/fault/status/429")
    healthy = [entry for entry in hits(demo_site, "/product/") if entry["host"] == "127.0.0.2"]
    assert len(healthy) == 24
    first_429 = min(entry["t"] for entry in sick if entry["status"] == 429)
    first_retry = min(entry["t"] for entry in sick if entry["status"] == 200)
    assert first_retry - first_429 >= 4.0
    # The healthy domain did not wait for the sick one's cooldown.
    assert max(entry["t"] for entry in healthy) < first_retry
    assert result.stat(stats.COOLDOWN_DOMAINS) == 1
