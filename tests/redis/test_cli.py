"""``scrapy resilience redis URL``: pending, leases per worker, dead workers and reclaimed counts of a job."""

from __future__ import annotations

import json
import subprocess
import sys

from redis_helpers import RedisServer

from scrapy_resilience.redis import keys

JOB = keys.JobKeys(queue="shop:requests", dupefilter="shop:dupefilter")


def _script(server: RedisServer, source: str, keys_: list[str], *args: object) -> object:
    return server.client.register_script(source)(keys=keys_, args=list(args))


def test_redis_view_shows_pending_leases_and_dead_workers(redis_server: RedisServer) -> None:
    """Five requests: two leased by a live worker, one reclaimed from a dead one; a paused site: the view lists all."""
    triples = [item for n in range(5) for item in (f"fp{n}", "0", f"payload-{n}")]
    assert _script(redis_server, keys.PUSH, [JOB.queue, JOB.dupefilter], "zset", *triples) == 5
    lease = [JOB.queue, JOB.workers, "", JOB.seq, JOB.crashes]
    _script(redis_server, keys.LEASE, [*lease[:2], JOB.leases("alive"), *lease[3:]], "zset", "alive", 2, 60_000)
    # A lease timeout of 0 ms: the worker is overdue at once, as one that was killed.
    _script(redis_server, keys.LEASE, [*lease[:2], JOB.leases("killed"), *lease[3:]], "zset", "killed", 1, 0)
    put_back = _script(redis_server, keys.RECLAIM, [JOB.queue, JOB.crashes, JOB.workers, JOB.dead],
                       "zset", JOB.lease_prefix)
    assert put_back == 1
    assert _script(redis_server, keys.PAUSE, [JOB.pauses], "shop.example", 600_000, "alive") == 1

    argv = [sys.executable, "-m", "scrapy_resilience", "redis", redis_server.url, "--queue", JOB.queue]
    document = json.loads(subprocess.run([*argv, "--json"], capture_output=True, text=True, check=True).stdout)
    assert document["pending"] == 3 and document["seen"] == 5
    assert [(w["worker"], w["leased"], w["alive"]) for w in document["workers"]] == [("alive", 2, True)]
    assert document["dead_workers"] == [{"worker": "killed", "reclaimed": 1}]
    assert document["reclaimed"] == 1 and document["abort"] is None
    (pause,) = document["paused_sites"]
    assert (pause["slot"], pause["seen_by"]) == ("shop.example", "alive") and 0 < pause["ends_in"] <= 600
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert "3 pending, 5 seen" in text and "killed" in text and "1 requests put back" in text
    assert "Paused for every worker: shop.example" in text


def test_redis_view_of_an_unreachable_server_is_a_usage_error(redis_server: RedisServer) -> None:
    """A URL nobody answers at exits 2 with one line naming it, no traceback."""
    redis_server.kill()
    argv = [sys.executable, "-m", "scrapy_resilience", "redis", redis_server.url, "--spider", "shop"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert redis_server.url in result.stderr and "Traceback" not in result.stderr
