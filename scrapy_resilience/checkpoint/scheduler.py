"""Scrapy's scheduler, telling the frontier ledger of each request it is given.

The ledger must see every request that enters the scheduler. Scrapy's
``request_scheduled`` signal tells it, but a signal receiver costs every
request a few microseconds of dispatch (a tenth of the add-on's cost on a
callback that yields 200,000 requests), so with Scrapy's own scheduler the
add-on installs this subclass, which calls the ledger directly. With any
other scheduler the ledger keeps listening to the signal.
"""

from __future__ import annotations

from typing import Any

from scrapy import Request
from scrapy.core.scheduler import Scheduler
from scrapy.crawler import Crawler

from scrapy_resilience.checkpoint.ledger import Ledger, get_ledger

SCRAPY_SCHEDULER = "scrapy.core.scheduler.Scheduler"


class JournaledScheduler(Scheduler):
    """Installed by the add-on as ``SCHEDULER`` when checkpoints are on and the project keeps Scrapy's own."""

    ledger: Ledger

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Any:
        scheduler = super().from_crawler(crawler)
        scheduler.ledger = get_ledger(crawler)
        scheduler.ledger.told_by_scheduler()
        return scheduler

    def enqueue_request(self, request: Request) -> bool:
        self.ledger.entered_scheduler(request)
        return super().enqueue_request(request)
