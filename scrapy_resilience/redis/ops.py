"""The Redis operations of one worker on one job, run in the link's thread (``link.RedisLink``).

Each takes the redis client first, so that the link can run it, and run it
again after a reconnection; each is one script or one command, so repeating
one after a lost reply is harmless (see ``link``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from scrapy_resilience.redis import keys


class JobOps:
    """The scripts of ``keys``, bound to a job's keys, its queue's mode and one worker."""

    def __init__(self, server: Any, job: keys.JobKeys, mode: str, worker: str, lease_timeout: float) -> None:
        self.job = job
        self.mode = mode
        self.worker = worker
        # A worker's deadline is 5/6 of the lease timeout ahead and every worker looks for overdue
        # ones every 1/6: a dead worker's requests are back within the timeout; a live one renews
        # every third, so it has half the timeout to spare before it would be taken for dead.
        self.timeout_ms = int(lease_timeout * 1000 * 5 / 6)
        self.mine = job.leases(worker)
        self.scripts = {name: server.register_script(source) for name, source in (
            ("push", keys.PUSH), ("lease", keys.LEASE), ("renew", keys.RENEW), ("reclaim", keys.RECLAIM),
            ("release", keys.RELEASE), ("status", keys.STATUS), ("pause", keys.PAUSE),
            ("abort", keys.ABORT))}  # fmt: skip

    def push(self, client: Any, batch: list[Any]) -> int:
        """Queue (fingerprint, score, payload) triples, flat; return how many were new."""
        return int(self.scripts["push"](keys=[self.job.queue, self.job.dupefilter], args=[self.mode, *batch],
                                        client=client))

    def lease(self, client: Any, count: int) -> list[Any]:
        """Take up to ``count`` requests: (lease id, crashes, payload) triples, flat."""
        job = self.job
        return list(self.scripts["lease"](keys=[job.queue, job.workers, self.mine, job.seq, job.crashes],
                                          args=[self.mode, self.worker, count, self.timeout_ms], client=client))

    def renew(self, client: Any) -> int:
        """Push the worker's deadline a lease timeout ahead; return the server time (ms)."""
        return int(self.scripts["renew"](keys=[self.job.workers], args=[self.worker, self.timeout_ms], client=client))

    def reclaim(self, client: Any) -> int:
        """Put back the requests of every worker past its deadline; return how many."""
        job = self.job
        return int(self.scripts["reclaim"](keys=[job.queue, job.crashes, job.workers, job.dead],
                                           args=[self.mode, job.lease_prefix], client=client))

    def status(self, client: Any) -> list[Any]:
        """(pending, leased by all workers, abort record, server time ms, pauses in force: slot, record, ...)."""
        job = self.job
        return list(self.scripts["status"](keys=[job.queue, job.workers, job.abort, job.pauses],
                                           args=[self.mode, job.lease_prefix], client=client))

    def abort(self, client: Any, reason: str, since_ms: int) -> str:
        """Record this worker's abort unless one taken since ``since_ms`` is; return the record in force."""
        return keys.as_str(self.scripts["abort"](keys=[self.job.abort], args=[reason, self.worker, since_ms],
                                                 client=client))

    def pause(self, client: Any, slot: str, until: float) -> int:
        """Pause ``slot`` for the job until ``until`` (epoch, our clock; stored in server time); 1 if recorded."""
        # Measured now, not when submitted: an operation that waited for a reconnection must not lengthen it.
        milliseconds = math.ceil((until - time.time()) * 1000)  # rounded up: never end a pause early
        if milliseconds <= 0:
            return 0
        return int(self.scripts["pause"](keys=[self.job.pauses], args=[slot, milliseconds, self.worker],
                                         client=client))

    def release(self, client: Any) -> int:
        """Put back everything this worker holds, without counting a crash; return how many."""
        job = self.job
        return int(self.scripts["release"](keys=[job.queue, job.crashes, job.workers, self.mine],
                                           args=[self.mode, self.worker], client=client))

    def ack(self, client: Any, leases: list[str]) -> int:
        return int(client.hdel(self.mine, *leases))

    def hold(self, client: Any, entry: str, value: bytes) -> int:
        return int(client.hset(self.mine, entry, value))

    def held_here(self, client: Any) -> dict[bytes, bytes]:
        """Every entry this worker holds in Redis (to take back leases whose reply was lost)."""
        return dict(client.hgetall(self.mine))

    def delete_job(self, client: Any) -> None:
        leases = list(client.scan_iter(match=self.job.lease_prefix + "*"))
        client.delete(*self.job.all_fixed(), *leases)

    def delete_if_finished(self, client: Any) -> None:
        # SCHEDULER_PERSIST=False: scrapy-redis deletes the queue at every close, even while
        # other workers use it; here only the job's last worker, once nothing is left, does.
        pending, leased, *_ = self.status(client)
        if int(pending) == 0 and int(leased) == 0:
            self.delete_job(client)
