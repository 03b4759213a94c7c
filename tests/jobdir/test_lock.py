"""One crawl at a time in a job directory: a second one is refused at start-up; a killed one leaves no lock."""

from __future__ import annotations

import signal
import stat
from pathlib import Path
from typing import Any

import pytest
from checkpoint_helpers import Crawl, feed_skus, stats_of, wait_for

from scrapy_resilience.exceptions import JobLockedError
from scrapy_resilience.jobdir.lock import LOCK_FILE, JobLock


def test_a_second_lock_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    """The error names the setting, the directory and the holder's pid; releasing lets the next one in."""
    job = tmp_path / "job"
    first = JobLock(job)
    first.acquire()
    with pytest.raises(JobLockedError) as refused:
        JobLock(job).acquire()
    assert str(refused.value).startswith(f"RESILIENCE_CHECKPOINT_DIR={str(job)!r} is in use by another crawl (pid ")
    assert stat.S_IMODE((job / LOCK_FILE).stat().st_mode) == 0o600
    first.release()
    second = JobLock(job)
    second.acquire()
    second.release()


def test_a_running_crawl_keeps_a_second_one_out_and_its_death_lets_the_next_in(
    scrapy_project_env: Any, start_demo_site: Any, tmp_path: Path
) -> None:
    """scrapy crawl on a directory in use exits at start-up touching nothing; after a SIGKILL the next run resumes."""
    site = start_demo_site("--products", "60", "--host", "127.0.0.1")
    scrapy_project_env.env["DEMO_SITE_URL"] = site.url
    crawl = Crawl(scrapy_project_env, tmp_path, settings={"DOWNLOAD_DELAY": 0.2})
    first = crawl.start()
    wait_for(lambda: feed_skus(crawl.feed), timeout=60, what="the first crawl's first item")
    other_feed = tmp_path / "other.jsonl"
    refused = scrapy_project_env.run("crawl", "catalogue", settings={
        **crawl.settings, "FEEDS": {str(other_feed): {"format": "jsonlines"}}})
    assert refused.returncode != 0
    assert (f"RESILIENCE_CHECKPOINT_DIR={str(crawl.job)!r} is in use by another crawl (pid {first.pid})"
            in refused.stderr), refused.stderr[-3000:]
    assert not other_feed.exists()
    assert first.poll() is None  # undisturbed
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    log = crawl.run(DOWNLOAD_DELAY=0)
    stats = stats_of(log)
    assert stats["finish_reason"] == "finished" and stats["resilience/resume/count"] == 1, log[-3000:]
    assert len(set(feed_skus(crawl.feed))) == site.info()["live"]  # nothing lost to the refused run
