"""SIGKILL at random instants, resume with the same directory: nothing lost, few duplicates.

Real ``scrapy crawl`` subprocesses of example_project's catalogue spider
against the session's demo site (3,000 products), items in a FEEDS JSON lines
file read as a user reads it.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from checkpoint_helpers import Crawl, feed_skus

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def uninterrupted(scrapy_project_env: Any, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The skus of one uninterrupted crawl with checkpoints on."""
    crawl = Crawl(scrapy_project_env, tmp_path_factory.mktemp("uninterrupted"))
    log = crawl.run()
    assert "Spider closed (finished)" in log, log[-3000:]
    return feed_skus(crawl.feed)


def test_sigkill_at_random_instants_loses_nothing(
    demo_site: Any, scrapy_project_env: Any, tmp_path: Path, uninterrupted: list[str]
) -> None:
    """Killed three times at seeded random instants, the resumed crawl yields every item of the uninterrupted one."""
    rng = random.Random(20261129)
    crawl = Crawl(scrapy_project_env, tmp_path)
    for _ in range(3):
        crawl.kill_after_items(rng.randint(150, 600))
    log = crawl.run()
    assert "Spider closed (finished)" in log, log[-3000:]

    items = feed_skus(crawl.feed)
    assert set(items) == set(uninterrupted)
    assert len(uninterrupted) == len(set(uninterrupted)) == demo_site.info()["live"]
    # Each resume puts back what was in flight at the kill (those whose items may
    # already be in the feed) and what was done since the last journal flush.
    in_flight_at_kills = sum(crawl.restored(run)[1] for run in (1, 2, 3))
    duplicates = sum(count - 1 for count in Counter(items).values())
    assert duplicates <= in_flight_at_kills
    assert all(crawl.restored(run)[0] > 0 for run in (1, 2, 3))
