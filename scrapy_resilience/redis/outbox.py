"""What one worker writes to the job's queue: the requests it schedules and its held retries.

Scheduled requests are pushed in batches (``keys.PUSH`` adds each one's
fingerprint in the same step), at most once per reactor turn, in the link's
thread: the reactor never waits. A retry held for its backoff is written at
once as an entry of the worker's lease hash (``h1``, ``h2``, ...): its parent
is acked as soon as it leaves the engine, and the retry must be in Redis by
then. When the held retry comes back to be scheduled, its entry is deleted
after it is pushed, never before: a kill in between crawls it twice, not zero
times.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

from scrapy import Request
from scrapy.statscollectors import StatsCollector
from scrapy.utils.asyncio import call_later

from scrapy_resilience.meta import REDIS_HELD_KEY
from scrapy_resilience.redis import compat, keys
from scrapy_resilience.redis.link import RedisLink
from scrapy_resilience.redis.ops import JobOps

PUSH_BATCH = 500  # requests per push script call


class Outbox:
    """Requests on their way to the queue, and the held retries' entries (see the module docstring)."""

    def __init__(self, link: RedisLink, ops: JobOps, payloads: compat.Payloads, stats: StatsCollector,
                 on_added: Callable[[int], None]) -> None:
        self.link = link
        self.ops = ops
        self.payloads = payloads
        self.stats = stats
        self.on_added = on_added  # called with how many requests a push queued (not duplicates)
        self.changed = 0  # seq of the link's last operation submitted here (each one changes the job)
        self.held: set[str] = set()  # held retries' entries in Redis
        self._held_ids = itertools.count(1)
        self._pending: list[Any] = []  # (fingerprint, score, payload), flat, not pushed yet
        self._held_done: list[str] = []  # held entries to delete once their retry is pushed
        self._flush_call: Any = None

    def __bool__(self) -> bool:
        """Whether something is still to be submitted to the link."""
        return bool(self._pending or self._held_done)

    def add(self, request: Request) -> None:
        """Queue ``request`` for the next push (with its fingerprint, unless ``dont_filter``)."""
        held = request.meta.pop(REDIS_HELD_KEY, None)
        fingerprint = "" if request.dont_filter else self.payloads.fingerprint(request)
        self._pending += (fingerprint, str(-request.priority), self.payloads.encode(request))
        if held is not None:
            self._held_done.append(held)
        if self._flush_call is None:
            self._flush_call = call_later(0, self.flush)

    def add_again(self, score: str, payload: bytes) -> None:
        """Queue a payload whose fingerprint is seen already (a request that failed during an outage)."""
        self._pending += ("", score, payload)

    def hold(self, request: Request) -> None:
        """Write a retry held for its backoff to Redis now, as one of this worker's entries."""
        entry = f"h{next(self._held_ids)}"
        value = keys.lease_value(str(-request.priority), 0, self.payloads.encode(request))
        request.meta[REDIS_HELD_KEY] = entry
        self.held.add(entry)
        self.changed = self.link.submit(partial(self.ops.hold, entry=entry, value=value))

    def flush(self) -> None:
        """Submit every request queued so far, then delete the entries of the held retries among them."""
        self._flush_call = None
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), 3 * PUSH_BATCH):
            batch = pending[start:start + 3 * PUSH_BATCH]
            self.changed = self.link.submit(partial(self.ops.push, batch=batch),
                                            partial(self._pushed, sent=len(batch) // 3))
        if self._held_done:
            done, self._held_done = self._held_done, []
            self.held.difference_update(done)
            self.changed = self.link.submit(partial(self.ops.ack, leases=done))

    def _pushed(self, added: int | None, sent: int) -> None:
        added = int(added or 0)
        self.stats.inc_value("scheduler/enqueued/redis", added)
        if sent > added:
            self.stats.inc_value("dupefilter/filtered", sent - added)
        if added:
            self.on_added(added)
