"""One pause per site for the whole job: a Retry-After seen by one worker holds that site on every worker.

A site that answers one worker's request with ``Retry-After`` asks the job,
not that worker, to wait: the other workers hitting it meanwhile would only
earn more 429s and 503s. So the worker whose site health paused a download
slot (``SiteHealth.observe_pauses``) writes ``slot -> until-ms TAB worker`` to
``Q:pauses`` (``keys.PAUSE``: the later end wins; ends in the server's time,
so the workers' clocks never matter). Every worker reads the pauses in force
with the job's status (every 0.25 s) and applies each new one through its own
site health (``SiteHealth.pause``): its requests of that slot wait outside
the downloader until the same moment, then go, as after a Retry-After of its
own. The write goes through the link's thread: the reactor never waits.

Only pauses are shared. Whether a site is down stays each worker's judgement:
a pause ends by itself at a known moment, an outage only when a probe is
answered, and sharing that would take one probe for the whole job.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from scrapy.crawler import Crawler

from scrapy_resilience import stats
from scrapy_resilience.health import site_health
from scrapy_resilience.redis.keys import as_str
from scrapy_resilience.redis.link import RedisLink
from scrapy_resilience.redis.ops import JobOps

logger = logging.getLogger(__name__)


class SharedPauses:
    """Publishes the pauses this worker's sites asked for and follows the ones other workers published."""

    def __init__(self, crawler: Crawler, link: RedisLink, ops: JobOps) -> None:
        self.stats = crawler.stats
        self.link = link
        self.ops = ops
        self.worker = ops.worker
        self.health = site_health(crawler)
        self.health.observe_pauses(self._paused_here)
        self._published: dict[str, float] = {}  # slot -> end of the latest pause written (epoch)
        self._followed: dict[str, int] = {}  # slot -> end of the latest pause followed (server ms)

    def _paused_here(self, slot: str, until: float) -> None:
        # Each answer of a pausing site asks again (every request in flight): write only a later end.
        if until <= self._published.get(slot, 0.0):
            return
        self._published[slot] = until
        self.link.submit(partial(self.ops.pause, slot=slot, until=until))
        self.stats.inc_value(stats.REDIS_PAUSES_PUBLISHED)

    def status(self, records: list[Any], server_ms: int) -> None:
        """The pauses in force as just read with the job's status (slot, record pairs, flat)."""
        for i in range(0, len(records), 2):
            slot = as_str(records[i])
            end, worker = as_str(records[i + 1]).split("\t", 1)
            until = int(end)
            if worker == self.worker or until <= self._followed.get(slot, 0):
                continue  # our own, or followed already
            self._followed[slot] = until
            self.stats.inc_value(stats.REDIS_PAUSES_FOLLOWED)
            self.health.pause(slot, (until - server_ms) / 1000, f"Retry-After seen by worker {worker}")
