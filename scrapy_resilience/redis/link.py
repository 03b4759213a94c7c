"""The one thread that talks to Redis for a worker: the reactor never waits on a socket.

The scheduler hands it operations (``submit``) that run in order, one at a
time, so that a request's children always reach Redis before its ack. Each
result goes back to the reactor thread (``callFromThread``). Periodic tasks
(renewing the worker's leases, reclaiming dead workers' leases, reading the
job's status) run between operations.

When Redis cannot be reached, the operation in hand is kept and tried again
after a reconnection, with a backoff doubling from 0.1 s up to a third of the
lease timeout: nothing is dropped, the crawl waits. Every operation is
idempotent or harmless when repeated (an ack is an ``HDEL``, a push goes
through the dupefilter; a lease whose reply was lost is found again by the
scheduler's ``adopt``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from scrapy.utils.asyncio import call_later
from twisted.internet import reactor
from twisted.internet.defer import Deferred

logger = logging.getLogger(__name__)

LOST = (RedisConnectionError, RedisTimeoutError)  # BusyLoadingError (loading the AOF) is a ConnectionError
FIRST_BACKOFF = 0.1

Operation = Callable[[Any], Any]  # called with the redis client, in the link's thread
Callback = Callable[[Any], None]  # called with the result, on the reactor thread


@attrs.define
class _Op:
    fn: Operation
    callback: Callback | None
    seq: int


@attrs.define
class _Periodic:
    interval: float
    fn: Operation
    callback: Callback | None
    due: float = 0.0


class RedisLink:
    """Runs Redis operations in order in one thread, reconnecting with backoff."""

    def __init__(self, client: Any, *, max_backoff: float, on_lost: Callable[[str], None],
                 on_reconnected: Callable[[float], None]) -> None:
        self.client = client
        # Our own loop retries, with its own backoff; redis-py's retries would hide the outage from it.
        client.set_retry(Retry(NoBackoff(), 0))
        self.max_backoff = max_backoff
        self.on_lost = on_lost
        self.on_reconnected = on_reconnected
        self.submitted = 0  # seq of the last operation submitted (reactor thread)
        self.applied = 0  # seq of the last operation done (written by the link thread)
        self.connected = True
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._periodic: list[_Periodic] = []
        self._abandon = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resilience-redis", daemon=True)
        self._done: Deferred[None] = Deferred()

    def every(self, interval: float, fn: Operation, callback: Callback | None = None) -> None:
        """Run ``fn`` every ``interval`` seconds between operations (register before ``start``)."""
        self._periodic.append(_Periodic(interval, fn, callback))

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Operation, callback: Callback | None = None) -> int:
        """Queue ``fn`` after every operation submitted before it; return its sequence number."""
        self.submitted += 1
        self._ops.put(_Op(fn, callback, self.submitted))
        return self.submitted

    def stop(self, deadline: float, *final: Operation) -> Deferred[None]:
        """Run the queued operations and ``final``, then stop; give up on them after ``deadline`` seconds."""
        self._stopping.set()  # no periodic task after this: the final operations are the last word
        for fn in final:
            self.submit(fn)
        self._ops.put(None)
        timer = call_later(deadline, self._give_up)

        def stopped(result: Any) -> Any:
            timer.cancel()
            return result

        return self._done.addBoth(stopped)

    def _give_up(self) -> None:
        if not self._done.called:
            logger.warning("Redis still unreachable: stopping with operations not done (their leases expire)")
            self._abandon.set()

    # -- the link's thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._abandon.is_set():
                now = time.monotonic()
                wait = min((task.due for task in self._periodic), default=now + 1.0) - now
                try:
                    op = self._ops.get(timeout=max(0.0, wait))
                except queue.Empty:
                    op = _Op(lambda client: None, None, 0)  # only the periodic tasks are due
                if op is None:
                    break
                self._do(op.fn, op.callback)
                if op.seq:
                    self.applied = op.seq
                now = time.monotonic()
                for task in self._periodic:
                    if task.due <= now and not self._stopping.is_set():
                        self._do(task.fn, task.callback)
                        task.due = time.monotonic() + task.interval
        finally:
            reactor.callFromThread(self._finish)  # type: ignore[attr-defined]

    def _finish(self) -> None:
        if not self._done.called:
            self._done.callback(None)

    def _do(self, fn: Operation, callback: Callback | None) -> None:
        while not self._abandon.is_set():
            try:
                result = fn(self.client)
            except LOST as exc:
                self._reconnect(exc)
                continue
            except RedisError:
                # Not an outage (a wrong type at one of the job's keys, say): retrying cannot help.
                logger.exception("Redis refused an operation of the leased queue")
                result = None
            if callback is not None:
                reactor.callFromThread(callback, result)  # type: ignore[attr-defined]
            return

    def _reconnect(self, exc: Exception) -> None:
        self.connected = False
        lost_at = time.monotonic()
        reactor.callFromThread(self.on_lost, str(exc))  # type: ignore[attr-defined]
        delay = FIRST_BACKOFF
        while not self._abandon.wait(delay):
            try:
                self.client.ping()
            except LOST:
                delay = min(self.max_backoff, delay * 2)
                continue
            self.connected = True
            reactor.callFromThread(self.on_reconnected, time.monotonic() - lost_at)  # type: ignore[attr-defined]
            return
