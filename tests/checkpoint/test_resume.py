"""Resume after a clean stop, after a corrupted checkpoint, after crashes; poison requests.

Real ``scrapy`` subprocesses against demo sites; items counted in a FEEDS
JSON lines file.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from checkpoint_helpers import Crawl, feed_lines, feed_skus, stats_of, wait_for

SPIDER = str(Path(__file__).parents[1] / "checkpoint_spider.py")

pytestmark = pytest.mark.timeout(300)


def live_skus(site: Any) -> set[str]:
    info = site.info()
    return {str(n) for n in range(1, info["products"] + 1)} - {str(n) for n in info["dead"]}


def test_threshold_close_and_sigint_then_resume_no_duplicates(
    demo_site: Any, scrapy_project_env: Any, tmp_path: Path
) -> None:
    """A close by CLOSESPIDER_ITEMCOUNT, then one by Ctrl-C, then a resume: every item exactly once."""
    crawl = Crawl(scrapy_project_env, tmp_path)
    log = crawl.run(CLOSESPIDER_ITEMCOUNT=300)
    assert "Spider closed (closespider_itemcount)" in log, log[-3000:]
    first = len(feed_lines(crawl.feed))

    process = crawl.start()
    wait_for(lambda: len(feed_lines(crawl.feed)) >= first + 400, timeout=120, what="400 more items")
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    assert "Spider closed (shutdown)" in crawl.log(), crawl.log()[-3000:]
    assert crawl.restored()[1] == 0  # a clean close leaves nothing in flight

    log = crawl.run()
    assert "Spider closed (finished)" in log, log[-3000:]
    items = feed_skus(crawl.feed)
    assert Counter(items).most_common(1)[0][1] == 1
    assert set(items) == live_skus(demo_site)
    final = stats_of(log)
    assert final["resilience/resume/count"] == 2
    assert final["resilience/resume/crashes"] == 0


def test_corrupted_newest_checkpoint_falls_back(start_demo_site: Any, scrapy_project_env: Any, tmp_path: Path) -> None:
    """The newest manifest is damaged after a kill: resume uses the one before it and loses nothing."""
    site = start_demo_site("--products", "1500")
    scrapy_project_env.env["DEMO_SITE_URL"] = site.url
    crawl = Crawl(scrapy_project_env, tmp_path, settings={"DOWNLOAD_DELAY": 0.01})
    checkpoints = crawl.job / "checkpoints"
    process = crawl.start()
    manifests = wait_for(lambda: sorted(checkpoints.glob("checkpoint-*.json"))[-3:] if checkpoints.exists()
                         and len(list(checkpoints.glob("checkpoint-*.json"))) >= 3 else None,
                         timeout=120, what="three checkpoints")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    newest = sorted(checkpoints.glob("checkpoint-*.json"))[-1]
    document = json.loads(newest.read_text())
    document["metadata"]["completed_items"] += 1  # a flipped byte: the checksum no longer matches
    newest.write_text(json.dumps(document))

    log = crawl.run()
    assert "Spider closed (finished)" in log, log[-3000:]
    assert "1 corrupted ones passed over" in log
    assert f"from checkpoint {int(newest.stem.split('-')[1]) - 1} " in log
    assert set(feed_skus(crawl.feed)) == live_skus(site)
    assert manifests  # the crawl had written several checkpoints before the kill


def test_poison_request_set_aside_after_n_crashes(
    start_demo_site: Any, scrapy_project_env: Any, tmp_path: Path
) -> None:
    """A page that kills the process every time is set aside after N deaths; the crawl goes on to the end, unaborted."""
    site = start_demo_site("--products", "120", "--dead-links", "0")
    poison = "/product/7.html"
    crawl = Crawl(scrapy_project_env, tmp_path, "runspider", SPIDER, "-a", f"site={site.url}", "-a",
                  f"poison={poison}", settings={"RESILIENCE_ABORT_CONSECUTIVE_CRASHES": 3})
    for _ in range(3):
        crawl.run(timeout=120)
        assert crawl.runs[-1].returncode == 70, crawl.log()[-3000:]
    log = crawl.run(timeout=120)
    assert "Spider closed (finished)" in log, log[-3000:]
    assert f"Poison request {site.url}{poison} set aside after 3 crashes" in log
    assert set(feed_skus(crawl.feed)) == live_skus(site) - {"7"}
    events = [json.loads(line) for line in (crawl.job / "events.jsonl").read_text().splitlines()]
    poisoned = [e for e in events if e["recovery_action"] == "manual"]
    assert len(poisoned) == 1 and poisoned[0]["context"]["url"] == site.url + poison
    final = stats_of(log)
    assert final["resilience/poison/set_aside"] == 1
    assert final["resilience/resume/crashes"] == 0  # setting the poison aside ended the streak it caused
    assert final["finish_reason"] == "finished"


def test_lazy_start_killed_midway_resumes_the_rest(
    start_demo_site: Any, scrapy_project_env: Any, tmp_path: Path
) -> None:
    """Killed while start() is still being read, the crawl crawls the rest and no handled start request again."""
    site = start_demo_site("--products", "600", "--dead-links", "0")
    crawl = Crawl(scrapy_project_env, tmp_path, "runspider", SPIDER, "-a", f"site={site.url}", "-a",
                  "start_urls=600", settings={"RESILIENCE_MONITOR_ENABLED": False, "DOWNLOAD_DELAY": 0.01})
    crawl.kill_after_items(150)
    log = crawl.run(timeout=180)
    assert "Spider closed (finished)" in log, log[-3000:]
    items = feed_skus(crawl.feed)
    assert set(items) == live_skus(site)
    # Without the skip, every start request handled before the kill would be crawled again (dont_filter).
    duplicates = sum(count - 1 for count in Counter(items).values())
    assert duplicates <= crawl.restored(1)[1]
    assert "Spider closed" not in crawl.log(0)  # it was killed, start() half read
