"""One abort for the whole job: the first worker to decide writes it to Redis, the others follow.

Each worker's monitor judges the failure rate on what it sees; N workers
hitting a dead site would otherwise decide N times, at N moments, some of them
only after many more failed requests. The first decision is written to
``Q:abort`` as ``server-ms TAB reason TAB worker`` (atomically, ``keys.ABORT``:
two workers deciding at once leave the first one's record); every worker reads it with
the job's status (every 0.25 s) and stops with the same reason through its own
monitor (``MonitorExtension.stop``), so each one runs its abort actions and
puts its unfinished requests back in the queue. Only the failure rate is
shared: memory, CPU or crashes are one worker's trouble, not the site's. A
decision older than the worker's own start is an earlier run's: a restarted
job crawls on.

A site's pause (a Retry-After seen by one worker) travels the same way, in
``pauses``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from scrapy.crawler import Crawler

from scrapy_resilience.monitor.extension import MonitorExtension
from scrapy_resilience.monitor.judge import REASON_FAILURE_RATE
from scrapy_resilience.redis.link import RedisLink
from scrapy_resilience.redis.ops import JobOps

logger = logging.getLogger(__name__)

SHARED_REASONS = frozenset({REASON_FAILURE_RATE})


class SharedAbort:
    """Publishes this worker's failure-rate abort and follows the one another worker published."""

    def __init__(self, crawler: Crawler, link: RedisLink, ops: JobOps, started_ms: Callable[[], int]) -> None:
        self.crawler = crawler
        self.link = link
        self.ops = ops
        self.worker = ops.worker
        self.started_ms = started_ms  # our start, server time: a decision older than that is an earlier run's
        self.published = False
        self.followed: str | None = None

    def _monitor(self) -> MonitorExtension | None:
        return self.crawler.get_extension(MonitorExtension)

    def check(self) -> None:
        """Publish this worker's own decision as soon as it is taken (called every sweep, 0.05 s)."""
        monitor = self._monitor()
        if monitor is None or self.published or self.followed is not None:
            return
        if monitor.stopping in SHARED_REASONS:
            self.published = True
            reason = monitor.stopping
            since = self.started_ms()
            self.link.submit(lambda client: self.ops.abort(client, reason, since), self._published)

    def _published(self, record: str | None) -> None:
        if record is None:
            return  # Redis refused the script (the link logged why)
        _, reason, worker = record.split("\t", 2)
        if worker != self.worker:
            logger.warning("Worker %(worker)s had decided to stop the job first (%(reason)s)",
                           {"worker": worker, "reason": reason})

    def status(self, record: str) -> None:
        """The job's abort record as just read (``""`` for none)."""
        monitor = self._monitor()
        if monitor is None or monitor.stopping is not None or not record:
            return
        at, reason, worker = record.split("\t", 2)
        if int(at) >= self.started_ms() and worker != self.worker:
            self.followed = reason
            logger.warning("Worker %(worker)s decided to stop the job (%(reason)s): stopping too",
                           {"worker": worker, "reason": reason})
            monitor.stop(reason, {"decided_by": worker})
