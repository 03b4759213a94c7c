"""A Retry-After seen by one worker of a scrapy-redis job pauses that site for every worker.

Real workers of example_project's catalogue spider on a real redis-server;
which worker sent what is told by its User-Agent in the demo site's request
log, and every moment compared is the site's own.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from checkpoint_helpers import stats_of, wait_for
from redis_helpers import RedisServer

pytestmark = pytest.mark.timeout(400)

RETRY_AFTER = 20
# Every page takes PAGE seconds and each worker has CONCURRENCY requests at a time, none waiting in
# a download slot's queue: a worker that has not heard of the pause yet (it hears within 0.25 s or
# so) can have sent at most CONCURRENCY requests since the Retry-After, one per finished page.
PAGE = 2.0
CONCURRENCY = 2
WORKERS = (1, 2, 3)


def agent(n: int) -> str:
    return f"shop worker-{n}"


def worker_id(log: str) -> str:
    """The worker id a worker's log announces (``Leased queue ... on Redis: worker ID, ...``)."""
    found = re.search(r"on Redis: worker (\S+),", log)
    assert found is not None, log[-3000:]
    return found.group(1)


def test_a_retry_after_seen_by_one_worker_pauses_the_site_for_every_worker(
        start_demo_site: Any, make_workers: Any, redis_server: RedisServer) -> None:
    """Worker 1 alone gets a 503 + Retry-After: 20: no worker crawls on before that moment; then the job finishes."""
    site = start_demo_site("--products", "40")
    site.set_faults(slow={"fraction": 1.0, "delay": PAGE})
    workers = make_workers(site, {"CONCURRENT_REQUESTS": CONCURRENCY})
    # Worker 1 sends one request at a time, so exactly one gets the 503 (two sent together could both).
    workers.start(USER_AGENT=agent(1), CONCURRENT_REQUESTS=1)
    for n in WORKERS[1:]:
        workers.start(USER_AGENT=agent(n))
    wait_for(lambda: {entry["ua"] for entry in site.log()} == {agent(n) for n in WORKERS}, timeout=120,
             what="requests from every worker")
    site.set_faults(outage={"duration": 600, "mode": "503", "retry_after": RETRY_AFTER, "user_agent": "worker-1"})
    wait_for(lambda: any(entry["status"] == 503 for entry in site.log()), timeout=60, what="worker 1's 503")
    site.set_faults(outage=None)  # one Retry-After: worker 1 is paused for 20 s, long enough to lift it
    workers.wait()

    log = site.log()
    (asked,) = [entry for entry in log if entry["status"] == 503]
    assert asked["ua"] == agent(1)
    moment = asked["done"] + RETRY_AFTER
    sent_meanwhile = Counter(entry["ua"] for entry in log if asked["done"] < entry["t"] < moment)
    # Worker 1 waits at once; the others stop as soon as they read the pause from Redis, and hold their
    # requests until the same moment. Without sharing they would send CONCURRENCY per PAGE (20 each).
    assert sent_meanwhile[agent(1)] == 0, sent_meanwhile
    assert all(sent_meanwhile[agent(n)] <= CONCURRENCY for n in (2, 3)), sent_meanwhile
    assert any(entry["t"] >= moment for entry in log)  # and the crawl went on after it
    assert stats_of(workers.log(1))["resilience/redis/pauses_published"] == 1
    for n in (2, 3):
        assert f"(Retry-After seen by worker {worker_id(workers.log(1))})" in workers.log(n)
        assert stats_of(workers.log(n))["resilience/redis/pauses_followed"] == 1
    for n in WORKERS:
        assert "Spider closed (finished)" in workers.log(n), workers.log(n)[-3000:]
    assert len(set(workers.skus())) == site.info()["live"]
