"""The board of a crawl's circuits (``health/board.SiteHealth``) on its own: a stand-in parking, no engine."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from scrapy import Request
from scrapy.utils.test import get_crawler

from scrapy_resilience.health.board import SiteHealth


class Parking:
    """The board's parking, recording its releases."""

    def __init__(self) -> None:
        self.released: list[tuple[str, bool]] = []

    def parked(self, slot: str) -> int:
        return 1

    def release(self, slot: str, everyone: bool, prefer: Any) -> int:
        self.released.append((slot, everyone))
        return 1


def test_a_request_that_ends_a_pause_before_its_timer_releases_the_parked_ones() -> None:
    """The first request after a pause's end may come before the pause's timer: the parked requests go then.

    Otherwise the timer finds the circuit closed already, releases nothing, and
    the parked requests wait for ever (a crawl that never finishes).
    """
    crawler = get_crawler()
    # No engine (every request is of slot ""), the crawler's settings, signals and stats.
    board = SiteHealth(SimpleNamespace(settings=crawler.settings, signals=crawler.signals, stats=crawler.stats,
                                       engine=None))
    board.parking = parking = Parking()
    board.pause("", 0.0, "a Retry-After of 0 s: over at once")
    assert board.holds_back("")  # paused until its timer runs
    assert board.admits(Request("http://127.0.0.1/"))
    assert parking.released == [("", True)]
    assert not board.holds_back("")
