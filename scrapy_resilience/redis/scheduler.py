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
buffer filled ahead of need, scheduled requests are pushed in batches, and
``has_pending_requests`` answers from the job's last status (read every
0.25 s): the worker stays open while any request of the job is pending or
leased by any worker, and while Redis is unreachable.
"""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import call_later, create_looping_call
from scrapy_redis import connection
from scrapy_redis.scheduler import Scheduler
from twisted.internet.defer import Deferred

from scrapy_resilience import settings as resilience_settings
from scrapy_resilience import signals as resilience_signals
from scrapy_resilience import stats
from scrapy_resilience.checkpoint.ledger import flush_feeds, in_progress
from scrapy_resilience.meta import CRASHES_KEY, REDIS_HELD_KEY, REDIS_LEASE_KEY
from scrapy_resilience.redis import compat, keys
from scrapy_resilience.redis.link import RedisLink
from scrapy_resilience.redis.ops import JobOps
from scrapy_resilience.redis.shared import SHARED_REASONS, SharedAbort

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 0.05  # as the frontier ledger: few duplicates after a kill
STATUS_INTERVAL = 0.25
PUSH_BATCH = 500  # requests per push script call
FAILED_KEPT = 10_000  # failed requests remembered for a failure-rate abort
EMPTY_POLL = 0.25  # seconds between leases tried while the queue looks empty


@attrs.frozen
class Status:
    seq: int  # the last of our operations applied before it was read
    pending: int
    leased: int
    abort: str
    server_ms: int


class LeasedScheduler(Scheduler):
    """scrapy-redis's scheduler with leases and acks (swapped in by the add-on)."""

    def __init__(self, crawler: Crawler, server: Any, *, lease_timeout: float, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.crawler = crawler
        self.stats = crawler.stats
        self.lease_timeout = lease_timeout
        self.mode = compat.queue_mode(self.queue_cls)
        self.worker = compat.worker_name()
        self.started_ms = 0  # server time of our first contact with Redis
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
        self._held: set[str] = set()  # held retries' entries
        self._held_ids = itertools.count(1)
        self._outbox: list[Any] = []  # (fingerprint, score, payload), flat, not pushed yet
        self._held_done: list[str] = []  # held entries to delete once their retry is pushed
        self._flush_call: Any = None
        self._leasing = False
        self._pending_hint = 1  # unknown until the first status: try
        self._empty_since = 0.0
        self._status: Status | None = None
        self._changed = 0  # seq of our last operation that changes the job (push, ack, hold)
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
        if self.flush_on_start:
            link.submit(ops.delete_job)
        link.submit(ops.renew, self._started)
        link.every(self.lease_timeout / 3, ops.renew)
        link.every(self.lease_timeout / 6, self._reclaim, self._reclaimed)  # see JobOps.timeout_ms
        link.every(STATUS_INTERVAL, self._read_status, self._status_read)
        link.start()
        self.shared = SharedAbort(self.crawler, link, self.job.abort, self.worker)
        self._sweeper = create_looping_call(self.sweep)
        self._sweeper.start(SWEEP_INTERVAL, now=False)
        self.crawler.signals.connect(self._request_held, signal=resilience_signals.request_held)
        logger.info("Leased queue %(queue)s on Redis: worker %(worker)s, leases expire after %(timeout)s s",
                    {"queue": self.job.queue, "worker": self.worker, "timeout": self.lease_timeout})

    def __len__(self) -> int:
        return len(self._buffer) + (self._status.pending if self._status else 0)

    def enqueue_request(self, request: Request) -> bool:
        held = request.meta.pop(REDIS_HELD_KEY, None)
        fingerprint = "" if request.dont_filter else self.payloads.fingerprint(request)
        self._outbox += (fingerprint, str(-request.priority), self.payloads.encode(request))
        if held is not None:
            self._held_done.append(held)
        if self._flush_call is None:
            self._flush_call = call_later(0, self._flush_outbox)
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
        if self._buffer or self._outbox or self._held_done:
            return True
        if self._link is None:
            return False
        status = self._status
        if status is None or status.seq < self._changed or not self._link.connected:
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
                self._outbox += ("", score, payload)  # no fingerprint: their own is seen already
        self._flush_outbox()
        left = len(self._buffer) + len(self._flying) + len(self._kept) + len(self._held)
        logger.info("Closing the leased queue (%(reason)s): %(left)d requests leased here go back to the queue",
                    {"reason": reason, "left": left})
        final: list[Callable[[Any], Any]] = [self.ops.release]
        if not self.persist and reason == "finished":
            final.append(self.ops.delete_if_finished)
        return self._link.stop(self.lease_timeout, *final)

    # -- done, kept, held -----------------------------------------------------------

    def sweep(self) -> None:
        """Ack the requests the engine is done with (after their children and their feed lines)."""
        self.shared.check()
        engine_has = in_progress(self.crawler)
        done = [lease for lease, request in self._flying.items() if request not in engine_has]
        if not done:
            return
        flush_feeds(self.crawler)
        for lease in done:
            del self._flying[lease]
        self._flush_outbox()  # children before the ack: a kill in between re-crawls the parent
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
        # The retry's parent is acked once it leaves the engine: the retry must be in Redis by then.
        entry = f"h{next(self._held_ids)}"
        value = keys.lease_value(str(-request.priority), 0, self.payloads.encode(request))
        request.meta[REDIS_HELD_KEY] = entry
        self._held.add(entry)
        assert self._link is not None
        self._changed = self._link.submit(partial(self.ops.hold, entry=entry, value=value))

    # -- pushing and leasing ------------------------------------------------------------

    def _flush_outbox(self) -> None:
        self._flush_call = None
        if self._link is None:
            return
        outbox, self._outbox = self._outbox, []
        for start in range(0, len(outbox), 3 * PUSH_BATCH):
            batch = outbox[start:start + 3 * PUSH_BATCH]
            self._changed = self._link.submit(partial(self.ops.push, batch=batch),
                                              partial(self._pushed, sent=len(batch) // 3))
        if self._held_done:
            done, self._held_done = self._held_done, []
            self._held.difference_update(done)
            self._changed = self._link.submit(partial(self.ops.ack, leases=done))

    def _pushed(self, added: int | None, sent: int) -> None:
        added = int(added or 0)
        self.stats.inc_value("scheduler/enqueued/redis", added)
        if sent > added:
            self.stats.inc_value("dupefilter/filtered", sent - added)
        if added:
            self._pending_hint += added
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

    def _read_status(self, client: Any) -> tuple[int, list[Any]]:
        # Run in the link's thread: ``applied`` is the last operation done before this read.
        applied = self._link.applied if self._link is not None else 0
        return applied, self.ops.status(client)

    # -- results, on the reactor thread ---------------------------------------------------

    def _started(self, server_ms: int | None) -> None:
        self.started_ms = int(server_ms or 0)

    def _reclaimed(self, count: int | None) -> None:
        if count:
            self.stats.inc_value(stats.REDIS_RECLAIMED, count)
            self._pending_hint += count
            logger.warning("Put back %(count)d requests leased by workers that stopped renewing them",
                           {"count": count})
            self._lease_more()

    def _status_read(self, result: tuple[int, list[Any]] | None) -> None:
        if result is None:
            return
        seq, (pending, leased, abort, server_ms) = result
        was_pending = self.has_pending_requests()
        self._status = Status(seq, int(pending), int(leased), keys.as_str(abort), int(server_ms))
        self._pending_hint = self._status.pending
        self.shared.status(self._status.abort, self.started_ms)
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
        known = set(self._flying) | self._kept | self._held | {lease for lease, _, _ in self._buffer}
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
