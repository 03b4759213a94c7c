"""Wiring the leased queue in: the scheduler swap and the middleware that keeps leases of unfinished requests."""

from __future__ import annotations

from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response

from scrapy_resilience import settings as resilience_settings
from scrapy_resilience.exceptions import RequestAfterAbort
from scrapy_resilience.health import is_failure
from scrapy_resilience.redis.scheduler import LeasedScheduler, scheduler_of

LEASE_KEEPER_ORDER = 11  # next to the frontier ledger's middleware (10): every refused request passes it


def swap_scheduler(settings: Any) -> None:
    """Put the leased scheduler in scrapy-redis's place (same priority: the user chose that scheduler)."""
    settings.set("SCHEDULER", LeasedScheduler, priority=settings.getpriority("SCHEDULER"))
    # Early in the chain, as the frontier ledger: every request refused by an abort passes it.
    settings.setdefault_in_component_priority_dict("DOWNLOADER_MIDDLEWARES", LeaseKeeperMiddleware, LEASE_KEEPER_ORDER)


class LeaseKeeperMiddleware:
    """Keeps the leases of requests that are not done although they leave the engine.

    A request refused because the crawl is aborting was never sent: it stays
    leased. A request whose download failed for good (after every retry; the
    monitor's notion of a failure) is done, but remembered: if the job then
    aborts for its failure rate, a dead site's requests are crawled again once
    it is back.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.failure_codes = frozenset(resilience_settings.read(crawler.settings, "RESILIENCE_RETRY_HTTP_CODES"))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LeaseKeeperMiddleware:
        return cls(crawler)

    def process_response(self, request: Request, response: Response) -> Response:
        if response.status in self.failure_codes and (scheduler := scheduler_of(self.crawler)) is not None:
            scheduler.failed(request)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        scheduler = scheduler_of(self.crawler)
        if scheduler is None:
            return
        if isinstance(exception, RequestAfterAbort):
            scheduler.keep(request)
        elif is_failure(exception, self.failure_codes):  # None for the other IgnoreRequests: done on purpose
            scheduler.failed(request)
