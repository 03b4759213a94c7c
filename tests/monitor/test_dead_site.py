"""A site that dies, with the abort policy on: aborted soon, nothing lost, resumed once it is back.

The add-on's defaults plus ``RESILIENCE_ABORT_FAILURE_RATE=50`` (and, for a
site that goes silent, ``DOWNLOAD_TIMEOUT=10``), as a user would set them;
and the two crawls that must *not* abort at 50 %: 10 % dead links, and 30 %
transient 503s that the retries recover.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import scrapy
from scrapy import signals as scrapy_signals
from scrapy.utils.test import get_crawler
from test_monitor import CatalogueSpider

from scrapy_resilience import stats

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "tests" / "cli" / "projects" / "supervised"
# The supervised project's quick settings, back to the defaults a user has.
DEFAULTS = {
    "RESILIENCE_CHECKPOINT_INTERVAL": 30,
    "RESILIENCE_MONITOR_INTERVAL": 5,
    "RESILIENCE_RETRY_BASE_DELAY": 1.0,
    "RESILIENCE_RETRY_MAX_DELAY": 60.0,
    "CONCURRENT_REQUESTS": 16,
}
VARIANTS = {"refused": ("refuse", {}), "silent": ("silent", {"DOWNLOAD_TIMEOUT": 10})}
WINDOW = 100  # RESILIENCE_ABORT_WINDOW_SIZE's default
ITEMS = 300


def scrapy_argv(*args: str, settings: dict[str, Any]) -> list[str]:
    argv = [sys.executable, "-m", *args]
    for name, value in settings.items():
        argv += ["-s", f"{name}={value}"]
    return argv


def run_in_project(project: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.pop("SCRAPY_SETTINGS_MODULE", None)
    return subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False)


def skus(feed: Path) -> set[str]:
    if not feed.exists():
        return set()
    return {json.loads(line)["sku"] for line in feed.read_text().splitlines() if line.strip()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the supervised test project."""
    import shutil

    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__", "crawls"))
    return copy


def kill_the_site_soon(site: Any, mode: str) -> float:
    site.reset()
    site.set_faults(slow={"fraction": 1.0, "delay": 0.3})
    death = time.time() + 3.0
    site.set_faults(outage={"start": death, "duration": 3600, "mode": mode})
    return death


@pytest.mark.parametrize("supervised", [False, True], ids=["crawl", "supervisor"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_dead_site_is_aborted_with_a_checkpoint_and_resumed_once_back(
    start_demo_site, project, tmp_path, variant, supervised
):
    """Refused or silent: aborted with resilience_failure_rate, one window of requests at most, resumable."""
    site = start_demo_site("--products", str(ITEMS), "--dead-links", "0")
    mode, extra = VARIANTS[variant]
    job, feed = tmp_path / "job", tmp_path / "items.jsonl"
    settings = {
        **DEFAULTS,
        **extra,
        "RESILIENCE_ABORT_FAILURE_RATE": 50,
        "RESILIENCE_CHECKPOINT_DIR": job,
        "FEEDS": json.dumps({str(feed): {"format": "jsonlines"}}),
    }
    command = ("scrapy_resilience", "crawl") if supervised else ("scrapy", "crawl")
    argv = scrapy_argv(*command, "products", "-a", f"site={site.url}", settings=settings)
    death = kill_the_site_soon(site, mode)
    first = run_in_project(project, argv)
    output = first.stdout + first.stderr
    log = site.log()
    if supervised:
        assert first.returncode == 2, output[-3000:]  # aborted by the abort policy: no restart
        assert output.count("INFO: Run 1:") == 1 and "INFO: Run 2:" not in output
    assert "resilience_failure_rate" in output, output[-3000:]
    assert len([e for e in log if e["t"] >= death]) <= WINDOW
    before = skus(feed)
    assert len(before) < ITEMS
    # The site is back: the same command resumes from the final checkpoint and completes.
    site.set_faults(outage=None)
    site.reset()
    again = run_in_project(project, argv)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert skus(feed) == {str(n) for n in range(1, ITEMS + 1)}  # nothing lost
    assert "Resum" in again.stdout + again.stderr


class FlakySpider(scrapy.Spider):
    """300 URLs of which 30 % answer 503 once or twice before they serve."""

    name = "flaky"

    async def start(self):
        rng = random.Random(30)
        for i in range(300):
            times = rng.choice((1, 2)) if rng.random() < 0.3 else 0
            yield scrapy.Request(f"{self.base}/fault/status/503?key=flaky{i}&times={times}")

    def parse(self, response):
        yield {"key": response.url}


ADDON_ABORT = {
    "ADDONS": {"scrapy_resilience.Addon": 500},
    "RESILIENCE_ABORT_FAILURE_RATE": 50,
    "LOG_LEVEL": "INFO",
    "TELNETCONSOLE_ENABLED": False,
}


class Items:
    def __init__(self, crawler: Any) -> None:
        self.count = 0
        crawler.signals.connect(self._item, signal=scrapy_signals.item_scraped)

    def _item(self) -> None:
        self.count += 1


@pytest_twisted.ensureDeferred
async def test_ten_percent_dead_links_never_abort_at_fifty_percent(demo_site):
    """A site with 10 % dead links (404) finishes under a 50 % failure-rate policy."""
    demo_site.reset()
    crawler = get_crawler(CatalogueSpider, ADDON_ABORT)
    await crawler.crawl(base=demo_site.url, pages=10)
    assert crawler.stats.get_value("finish_reason") == "finished"
    assert crawler.stats.get_value("downloader/response_status_count/404") >= 10
    assert crawler.stats.get_value(stats.ABORT_REASON) is None


@pytest_twisted.ensureDeferred
async def test_thirty_percent_transient_503s_recovered_by_retries_never_abort(demo_site):
    """30 % of the pages fail once or twice with 503 and then serve: no abort at 50 %, every page served."""
    demo_site.reset()
    demo_site.set_faults(slow={"fraction": 1.0, "delay": 0.05})
    crawler = get_crawler(FlakySpider, ADDON_ABORT)
    items = Items(crawler)
    await crawler.crawl(base=demo_site.url)
    assert crawler.stats.get_value("finish_reason") == "finished"
    assert crawler.stats.get_value(stats.ABORT_REASON) is None
    assert items.count == 300
    assert crawler.stats.get_value("retry/count") >= 90
    assert crawler.stats.get_value(stats.HEALTH_OPENED) is None  # flaky pages never made the site look down
