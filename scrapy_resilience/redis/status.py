"""The job's status, read every 0.25 s in the link's thread, and what the workers share through it.

One read (``keys.STATUS``) tells a worker how many requests of the job are
pending and leased by any worker (whether it may close: the scheduler's
``has_pending_requests``), the job's abort decision (``shared.SharedAbort``)
and the sites' pauses in force (``pauses.SharedPauses``). Each status carries
the sequence number of the last of the worker's own operations applied before
it was read, so that the scheduler never judges from a status that misses its
latest push or ack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from scrapy.crawler import Crawler

from scrapy_resilience.redis.keys import as_str
from scrapy_resilience.redis.link import RedisLink
from scrapy_resilience.redis.ops import JobOps
from scrapy_resilience.redis.pauses import SharedPauses
from scrapy_resilience.redis.shared import SharedAbort

STATUS_INTERVAL = 0.25


@attrs.frozen
class Status:
    seq: int  # the last of our operations applied before it was read
    pending: int
    leased: int
    abort: str
    server_ms: int


class JobStatus:
    """Reads the job's status for one worker and hands it to the shared abort, the shared pauses and ``on_read``."""

    def __init__(self, crawler: Crawler, link: RedisLink, ops: JobOps, on_read: Callable[[Status], None]) -> None:
        self.link = link
        self.ops = ops
        self.on_read = on_read
        self.started_ms = 0  # server time of our first contact with Redis: older abort decisions are not ours
        self.abort = SharedAbort(crawler, link, ops, lambda: self.started_ms)
        self.pauses = SharedPauses(crawler, link, ops)
        link.every(STATUS_INTERVAL, self._read, self._read_done)

    def started(self, server_ms: int | None) -> None:
        """The server time of the worker's first renewal (a callback of ``JobOps.renew``)."""
        self.started_ms = int(server_ms or 0)

    def _read(self, client: Any) -> tuple[int, list[Any]]:
        # Run in the link's thread: ``applied`` is the last operation done before this read.
        return self.link.applied, self.ops.status(client)

    def _read_done(self, result: tuple[int, list[Any]] | None) -> None:
        if result is None:
            return
        seq, (pending, leased, abort, server_ms, pauses) = result
        status = Status(seq, int(pending), int(leased), as_str(abort), int(server_ms))
        self.abort.status(status.abort)
        self.pauses.status(pauses, status.server_ms)
        self.on_read(status)
