"""The Lua scripts of the leased queue, run on a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest
from redis_helpers import RedisServer

from scrapy_resilience.redis import keys, link

JOB = keys.JobKeys(queue="shop:requests", dupefilter="shop:dupefilter")


def run(server: RedisServer, source: str, keys_: list[str], *args: Any) -> Any:
    return server.client.register_script(source)(keys=keys_, args=list(args))


def lease(server: RedisServer, worker: str, count: int, timeout_ms: int, mode: str = "zset") -> list[Any]:
    return run(server, keys.LEASE, [JOB.queue, JOB.workers, JOB.leases(worker), JOB.seq, JOB.crashes],
               mode, worker, count, timeout_ms)


def reclaim(server: RedisServer, mode: str = "zset") -> int:
    return run(server, keys.RECLAIM, [JOB.queue, JOB.crashes, JOB.workers, JOB.dead], mode, JOB.lease_prefix)


def test_the_package_named_redis_imports_the_redis_client() -> None:
    """``import redis`` inside ``scrapy_resilience.redis`` is the client library, not the subpackage."""
    assert link.RedisConnectionError.__module__ == "redis.exceptions"


@pytest.mark.parametrize("mode", ["zset", "fifo", "lifo"])
def test_a_dead_workers_request_comes_back_with_its_crash_count(redis_server: RedisServer, mode: str) -> None:
    """Leased by a worker that never renews: reclaimed into the queue, taken again with one crash counted."""
    assert run(redis_server, keys.PUSH, [JOB.queue, JOB.dupefilter], mode, "fp", "0", "payload") == 1
    assert run(redis_server, keys.PUSH, [JOB.queue, JOB.dupefilter], mode, "fp", "0", "payload") == 0  # seen
    (_, crashes, payload) = lease(redis_server, "dies", 5, 0, mode)
    assert (int(crashes), payload) == (0, b"payload")
    assert reclaim(redis_server, mode) == 1
    assert redis_server.client.hgetall(JOB.dead) == {b"dies": b"1"}
    (_, crashes, payload) = lease(redis_server, "lives", 5, 60_000, mode)
    assert (int(crashes), payload) == (1, b"payload")
    assert reclaim(redis_server, mode) == 0  # a live worker's leases stay


def test_a_clean_stop_puts_everything_back_without_a_crash(redis_server: RedisServer) -> None:
    """RELEASE returns a worker's leases and held retries to the queue and forgets the worker."""
    run(redis_server, keys.PUSH, [JOB.queue, JOB.dupefilter], "zset", "a", "-5", "first", "b", "0", "second")
    lease(redis_server, "w", 1, 60_000)
    redis_server.client.hset(JOB.leases("w"), "h1", keys.lease_value("0", 0, b"held retry"))
    released = run(redis_server, keys.RELEASE, [JOB.queue, JOB.crashes, JOB.workers, JOB.leases("w")], "zset", "w")
    assert released == 2
    assert redis_server.client.zrange(JOB.queue, 0, -1) == [b"first", b"held retry", b"second"]
    assert redis_server.client.zcard(JOB.workers) == 0 and not redis_server.client.exists(JOB.crashes)


def test_the_later_pause_of_a_site_wins_and_the_status_lists_those_in_force(redis_server: RedisServer) -> None:
    """PAUSE keeps the pause that ends last per slot (server time) and drops ended ones; STATUS lists the others."""
    def pause(slot: str, ms: int, worker: str) -> int:
        return int(run(redis_server, keys.PAUSE, [JOB.pauses], slot, ms, worker))

    def in_force() -> dict[bytes, bytes]:
        status_keys = [JOB.queue, JOB.workers, JOB.abort, JOB.pauses]
        pauses = run(redis_server, keys.STATUS, status_keys, "zset", JOB.lease_prefix)[4]
        return dict(zip(pauses[::2], pauses[1::2], strict=True))

    assert pause("shop.example", 60_000, "w1") == 1
    assert pause("shop.example", 30_000, "w2") == 0  # ends sooner: w1's stays
    redis_server.client.hset(JOB.pauses, "ended.example", "1000\tw3")  # long over
    (record,) = in_force().values()
    until, worker = record.split(b"\t")
    assert worker == b"w1" and int(until) > int(redis_server.client.time()[0]) * 1000 + 50_000
    assert pause("shop.example", 90_000, "w2") == 1  # ends later: w2's now
    assert set(redis_server.client.hkeys(JOB.pauses)) == {b"shop.example"}  # the ended ones were dropped
    assert in_force()[b"shop.example"].endswith(b"\tw2")


def test_the_first_abort_of_a_run_stands_and_an_earlier_runs_is_replaced(redis_server: RedisServer) -> None:
    """ABORT keeps a decision taken since the worker's start; one older than that is overwritten."""
    def abort(reason: str, worker: str, since: int) -> list[str]:
        return keys.as_str(run(redis_server, keys.ABORT, [JOB.abort], reason, worker, since)).split("\t")

    at, reason, worker = abort("resilience_failure_rate", "first", 0)
    assert (reason, worker) == ("resilience_failure_rate", "first")
    assert abort("other_reason", "second", int(at)) == [at, "resilience_failure_rate", "first"]
    assert keys.as_str(redis_server.client.get(JOB.abort)) == f"{at}\tresilience_failure_rate\tfirst"
    # A worker started after that decision (a restarted job) replaces it with its own.
    new_at, _, worker = abort("resilience_failure_rate", "restarted", int(at) + 1)
    assert worker == "restarted" and int(new_at) >= int(at)
