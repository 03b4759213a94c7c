"""Scrapy's scheduler, telling the frontier ledger of each request it is given.

Its memory queues keep a big frontier as JSON text (``spill.py``).

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
from scrapy_resilience.checkpoint.spill import spilling_queue

SCRAPY_SCHEDULER = "scrapy.core.scheduler.Scheduler"


class JournaledScheduler(Scheduler):
    """Installed by the add-on as ``SCHEDULER`` when checkpoints are on and the project keeps Scrapy's own."""

    ledger: Ledger

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Any:
        scheduler = super().from_crawler(crawler)
        scheduler.ledger = get_ledger(crawler)
        scheduler.ledger.told_by_scheduler()
        # A big frontier waits as the JSON the ledger journals (spill.py). The
        # start requests' queue class is a private attribute in Scrapy 2.19.
        for name in ("mqclass", "_smqclass"):
            queue_class = getattr(scheduler, name, None)
            if queue_class is not None:
                setattr(scheduler, name, spilling_queue(queue_class))
        return scheduler

    def enqueue_request(self, request: Request) -> bool:
        self.ledger.entered_scheduler(request)
        return super().enqueue_request(request)
