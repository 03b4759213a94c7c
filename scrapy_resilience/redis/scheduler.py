"""The leased scheduler: scrapy-redis's scheduler whose requests stay in Redis until done.

scrapy-redis pops a request destructively and has already added its
fingerprint, so a worker killed with requests in memory loses them for good.
Here a request taken from the queue is *leased* to the worker (``keys.LEASE``)
and stays in Redis until it is done in the sense of our checkpoints: the
engine dropped it from its in-progress set (its children are scheduled, its
items are out of the pipelines) and the feed files were flushed
(``checkpoint.ledger.in_progress`` and ``flush_feeds``, the same signal the
frontier ledger uses); only then is it acked. A worker that dies stops
renewing its leases; within ``RESILIENCE_REDIS_LEASE_TIMEOUT`` seconds another
worker (or it, restarted) puts them back in the queue with one crash more.
Retries waiting for their backoff are leased entries too.

The reactor never waits for Redis: requests taken are kept in a small local
buffer filled ahead of need, scheduled requests are pushed in batches
(``outbox``), and ``has_pending_requests`` answers from the job's last status
(read every 0.25 s): the worker stays open while any request of the job is
pending or leased by any worker, and while Redis is unreachable. The status
also carries what the workers share: the job's abort and its sites' pauses
(``status``).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import create_looping_call
from scrapy_redis import connection
from scrapy_redis.scheduler import Scheduler
from twisted.internet.defer import Deferred

from scrapy_resilience import settings as resilience_settings
from scrapy_resilience import signals as resilience_signals
from scrapy_resilience import stats
from scrapy_resilience.checkpoint.ledger import flush_feeds, in_progress
from scrapy_resilience.meta import CRASHES_KEY, REDIS_LEASE_KEY
from scrapy_resilience.redis import compat, keys
from scrapy_resilience.redis.link import RedisLink
from scrapy_resilience.redis.ops import JobOps
from scrapy_resilience.redis.outbox import Outbox
from scrapy_resilience.redis.shared import SHARED_REASONS
from scrapy_resilience.redis.status import JobStatus, Status

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 0.05  # as the frontier ledger: few duplicates after a kill
FAILED_KEPT = 10_000  # failed requests remembered for a failure-rate abort
EMPTY_POLL = 0.25  # seconds between leases tried while the queue looks empty


class LeasedScheduler(Scheduler):
    """scrapy-redis's scheduler with leases and acks (swapped in by the add-on)."""

    def __init__(self, crawler: Crawler, server: Any, *, lease_timeout: float, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.crawler = crawler
        self.stats = crawler.stats
        self.lease_timeout = lease_timeout
        self.mode = compat.queue_mode(self.queue_cls)
        self.worker = compat.worker_name()
        concurrency = crawler.settings.getint("CONCURRENT_REQUESTS")
        # Requests leased at most: what the engine can work on at once. A worker
        # that leased more would hoard its own children while another one idles.
        self._room = max(2, concurrency)
        self._buffer: deque[tuple[str, int, bytes]] = deque()  # (lease id, crashes, payload)
        self._flying: dict[str, Request] = {}  # handed to the engine, not done yet
        self._kept: set[str] = set()  # refused by an abort: left leased, put back at close
        # Requests whose download failed for good (done, acked): pushed again if the job aborts for its
        # failure rate, so that the run after the site's return crawls them.
        self._failed: deque[tuple[str, bytes]] = deque(maxlen=FAILED_KEPT)
        self._leasing = False
        self._pending_hint = 1  # unknown until the first status: try
        self._empty_since = 0.0
        self._status: Status | None = None
        self._changed = 0  # seq of our last ack (the outbox counts its pushes and holds)
        self._reclaim_after = 0.0
        self._link: RedisLink | None = None
        self._sweeper: Any = None
        self._closing = False
        _schedulers[crawler] = self

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LeasedScheduler:
        settings = crawler.settings
        kwargs = compat.scheduler_kwargs(settings)
        server = connection.from_settings(settings)
        timeout = resilience_settings.read(settings, "RESILIENCE_REDIS_LEASE_TIMEOUT")
        return cls(crawler, server, lease_timeout=timeout, **kwargs)

    # -- Scrapy's scheduler interface ----------------------------------------------

    def open(self, spider: Spider) -> None:
        self.spider = spider
        name = {"spider": spider.name}
        self.job = keys.JobKeys(queue=self.queue_key % name, dupefilter=self.dupefilter_key % name)
        self.payloads = compat.Payloads(self.crawler, spider, self.serializer, self.dupefilter_cls)
        ops = self.ops = JobOps(self.server, self.job, self.mode, self.worker, self.lease_timeout)
        link = self._link = RedisLink(self.server, max_backoff=max(0.5, self.lease_timeout / 3),
                                      on_lost=self._lost, on_reconnected=self._reconnected)
        self.job_status = JobStatus(self.crawler, link, ops, self._status_read)
        if self.flush_on_start:
            link.submit(ops.delete_job)
        link.submit(ops.renew, self.job_status.started)
        link.every(self.lease_timeout / 3, ops.renew)
        link.every(self.lease_timeout / 6, self._reclaim, self._reclaimed)  # see JobOps.timeout_ms
        self.outbox = Outbox(link, ops, self.payloads, self.stats, self._added)
        link.start()
        self._sweeper = create_looping_call(self.sweep)
        self._sweeper.start(SWEEP_INTERVAL, now=False)
        self.crawler.signals.connect(self._request_held, signal=resilience_signals.request_held)
        logger.info("Leased queue %(queue)s on Redis: worker %(worker)s, leases expire after %(timeout)s s",
                    {"queue": self.job.queue, "worker": self.worker, "timeout": self.lease_timeout})

    def __len__(self) -> int:
        return len(self._buffer) + (self._status.pending if self._status else 0)

    def enqueue_request(self, request: Request) -> bool:
        self.outbox.add(request)
        # True even for a duplicate: the verdict is Redis's, in the push script (the
        # engine only uses it to send request_dropped).
        return True

    def next_request(self) -> Request | None:
        if not self._buffer:
            self._lease_more()
            return None
        lease, crashes, payload = self._buffer.popleft()
        self._lease_more()
        request = self.payloads.decode(payload)
        request.meta[REDIS_LEASE_KEY] = lease
        if crashes:
            request.meta[CRASHES_KEY] = crashes
        self._flying[lease] = request
        self.stats.inc_value("scheduler/dequeued/redis")
        return request

    def has_pending_requests(self) -> bool:
        if self._buffer or (self._link is not None and self.outbox):
            return True
        if self._link is None:
            return False
        status = self._status
        if status is None or status.seq < max(self._changed, self.outbox.changed) or not self._link.connected:
            return True  # our own latest changes are not in it, or Redis is away: not finished
        return status.pending > 0 or status.leased > 0

    def close(self, reason: str) -> Deferred[None] | None:
        if self._link is None:
            return None
        self._closing = True
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self.sweep()
        if reason in SHARED_REASONS and self._failed:
            logger.info("%(count)d requests that failed while the site was down go back to the queue",
                        {"count": len(self._failed)})
            for score, payload in self._failed:
                self.outbox.add_again(score, payload)
        self.outbox.flush()
        left = len(self._buffer) + len(self._flying) + len(self._kept) + len(self.outbox.held)
        logger.info("Closing the leased queue (%(reason)s): %(left)d requests leased here go back to the queue",
                    {"reason": reason, "left": left})
        final: list[Callable[[Any], Any]] = [self.ops.release]
        if not self.persist and reason == "finished":
            final.append(self.ops.delete_if_finished)
        return self._link.stop(self.lease_timeout, *final)

    # -- done, kept, held -----------------------------------------------------------

    def sweep(self) -> None:
        """Ack the requests the engine is done with (after their children and their feed lines)."""
        self.job_status.abort.check()
        engine_has = in_progress(self.crawler)
        done = [lease for lease, request in self._flying.items() if request not in engine_has]
        if not done:
            return
        flush_feeds(self.crawler)
        for lease in done:
            del self._flying[lease]
        self.outbox.flush()  # children before the ack: a kill in between re-crawls the parent
        self._ack(done)
        self._lease_more()

    def _ack(self, leases: list[str]) -> None:
        if not leases:
            return
        assert self._link is not None
        self._changed = self._link.submit(partial(self.ops.ack, leases=leases))
        self.stats.inc_value(stats.REDIS_ACKED, len(leases))

    def keep(self, request: Request) -> None:
        """``request`` was refused by an abort: not done; it goes back to the queue at close."""
        lease = request.meta.get(REDIS_LEASE_KEY)
        if lease is not None and self._flying.pop(lease, None) is not None:
            self._kept.add(lease)

    def failed(self, request: Request) -> None:
        """``request``'s download failed for good: done, unless the job aborts for its failure rate."""
        self._failed.append((str(-request.priority), self.payloads.encode(request)))

    def _request_held(self, request: Request, not_before: float) -> None:
        self.outbox.hold(request)

    # -- leasing ------------------------------------------------------------------------

    def _added(self, count: int) -> None:
        self._pending_hint += count
        self._lease_more()

    def _lease_more(self) -> None:
        if self._leasing or self._closing or self._link is None:
            return
        count = self._room - len(self._buffer) - len(self._flying)
        if count < max(1, self._room // 4) and (count <= 0 or self._buffer):
            return
        if self._pending_hint <= 0 and time.monotonic() - self._empty_since < EMPTY_POLL:
            return
        self._leasing = True
        self._link.submit(partial(self.ops.lease, count=count), partial(self._leased, asked=count))

    def _leased(self, result: list[Any] | None, asked: int) -> None:
        self._leasing = False
        result = result or []
        got = len(result) // 3
        for i in range(0, len(result), 3):
            self._buffer.append((keys.as_str(result[i]), int(result[i + 1]), result[i + 2]))
        self.stats.inc_value(stats.REDIS_LEASED, got)
        if got < asked:
            self._pending_hint = 0
            self._empty_since = time.monotonic()
        else:
            self._pending_hint -= got
        if got and not self._closing:
            compat.wake(self.crawler)

    def _reclaim(self, client: Any) -> int:
        if time.monotonic() < self._reclaim_after:
            return 0  # just reconnected: give the other workers a lease timeout to renew theirs
        return self.ops.reclaim(client)

    # -- results, on the reactor thread ---------------------------------------------------

    def _reclaimed(self, count: int | None) -> None:
        if count:
            self.stats.inc_value(stats.REDIS_RECLAIMED, count)
            self._pending_hint += count
            logger.warning("Put back %(count)d requests leased by workers that stopped renewing them",
                           {"count": count})
            self._lease_more()

    def _status_read(self, status: Status) -> None:
        was_pending = self.has_pending_requests()
        self._status = status
        self._pending_hint = status.pending
        self._lease_more()
        if was_pending and not self.has_pending_requests():
            compat.wake(self.crawler)  # the job is finished: let the engine see it idle now

    def _lost(self, error: str) -> None:
        logger.warning("Lost Redis (%(error)s): waiting and reconnecting; nothing leased is lost",
                       {"error": error})

    def _reconnected(self, seconds: float) -> None:
        self.stats.inc_value(stats.REDIS_RECONNECTS)
        logger.warning("Reconnected to Redis after %(seconds).1f s", {"seconds": seconds})
        self._reclaim_after = time.monotonic() + self.lease_timeout
        assert self._link is not None
        self._link.submit(self.ops.renew)
        self._link.submit(self.ops.held_here, self._adopt)

    def _adopt(self, entries: dict[bytes, bytes] | None) -> None:
        """Take back our leases whose reply was lost with the connection."""
        known = set(self._flying) | self._kept | self.outbox.held | {lease for lease, _, _ in self._buffer}
        for raw, value in (entries or {}).items():
            lease = keys.as_str(raw)
            if lease not in known:
                _, crashes, payload = keys.parse_lease_value(value)
                self._buffer.append((lease, crashes, payload))
        compat.wake(self.crawler)


_schedulers: weakref.WeakKeyDictionary[Crawler, LeasedScheduler] = weakref.WeakKeyDictionary()


def scheduler_of(crawler: Crawler) -> LeasedScheduler | None:
    """The leased scheduler of ``crawler``, once the engine built it."""
    return _schedulers.get(crawler)
