"""Many ``scrapy crawl`` workers on one scrapy-redis job: kill any of them, lose nothing.

Real worker processes of example_project's catalogue spider, a real
redis-server (``redis_server``), a private demo site; items read from each
worker's JSON lines feed as a user reads them.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from typing import Any

import pytest
from checkpoint_helpers import stats_of, wait_for
from redis_helpers import RedisServer

pytestmark = pytest.mark.timeout(400)

PRODUCTS = "240"


@pytest.fixture
def site(start_demo_site: Any) -> Any:
    """A private demo site; a quarter of its pages take 0.1 s, so a crawl lasts long enough to be killed."""
    site = start_demo_site("--products", PRODUCTS)
    site.set_faults(slow={"fraction": 0.25, "delay": 0.1})
    return site


def worker_leases(server: RedisServer, pid: int) -> int:
    """Requests leased (taken, or held for a backoff) by the worker process ``pid`` right now."""
    for worker in server.client.zrange("catalogue:requests:workers", 0, -1):
        if f":{pid}:" in worker.decode():
            return int(server.client.hlen(b"catalogue:requests:lease:" + worker))
    return 0


@pytest.mark.parametrize("queue", ["PriorityQueue", "FifoQueue", "LifoQueue"])
def test_one_worker_alone_crawls_the_whole_site(site: Any, make_workers: Any, redis_server: RedisServer,
                                                queue: str) -> None:
    """With the add-on, scrapy-redis's settings unchanged: one worker crawls every item and leaves nothing behind."""
    workers = make_workers(site, {"SCHEDULER_QUEUE_CLASS": f"scrapy_redis.queue.{queue}"})
    workers.start()
    workers.wait()
    log = workers.log(1)
    assert "Spider closed (finished)" in log, log[-3000:]
    assert "Leased queue catalogue:requests" in log
    assert sorted(workers.skus()) == sorted(set(workers.skus()))
    assert len(workers.skus()) == site.info()["live"]
    assert not redis_server.client.exists("catalogue:requests")
    assert not redis_server.client.keys("catalogue:requests:lease:*")
    assert not redis_server.client.exists("catalogue:requests:workers")  # it left cleanly, not for dead


def test_requests_that_fail_for_good_do_not_keep_the_job_open(
        site: Any, make_workers: Any, redis_server: RedisServer) -> None:
    """Pages that fail after their last attempt are done: the workers finish and nothing stays leased."""
    site.set_faults(outage={"duration": 3600, "mode": "503"})
    workers = make_workers(site, {"RESILIENCE_RETRY_MAX_ATTEMPTS": 1})
    workers.start(2)
    workers.wait()
    for n in (1, 2):
        assert "Spider closed (finished)" in workers.log(n), workers.log(n)[-3000:]
    assert not redis_server.client.keys("catalogue:requests:lease:*")


def test_sigkilled_workers_lose_nothing(site: Any, make_workers: Any, redis_server: RedisServer) -> None:
    """Three workers, one SIGKILLed at seeded moments (restarted once, then not): every item, few duplicates."""
    rng = random.Random(20261202)
    workers = make_workers(site)
    workers.start(3)
    in_flight = 0
    for victim in (1, 4):  # worker 1, then its replacement (worker 4), which is not restarted
        moment = workers.total_items() + rng.randint(10, 60)
        process = workers.processes[victim - 1]
        wait_for(lambda moment=moment, process=process: (
                     workers.total_items() >= moment and worker_leases(redis_server, process.pid) > 0
                 ) or process.poll() is not None,
                 timeout=120, what=f"{moment} items in all, worker {victim} with requests leased")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        in_flight += worker_leases(redis_server, process.pid)
        if victim == 1:
            workers.start()
    workers.wait()
    for n in (2, 3):
        assert "Spider closed (finished)" in workers.log(n), workers.log(n)[-3000:]
    items = workers.skus()
    assert len(set(items)) == site.info()["live"]
    duplicates = sum(count - 1 for count in Counter(items).values())
    assert duplicates <= in_flight
    reclaimed = sum(int(redis_server.client.hget("catalogue:requests:dead", worker) or 0)
                    for worker in redis_server.client.hkeys("catalogue:requests:dead"))
    assert reclaimed == in_flight > 0
    assert not redis_server.client.keys("catalogue:requests:lease:*")


def held_retries(server: RedisServer, pid: int) -> int:
    """Retries held for their backoff by the worker process ``pid``, as Redis has them."""
    for worker in server.client.zrange("catalogue:requests:workers", 0, -1):
        if f":{pid}:" in worker.decode():
            return sum(key.startswith(b"h") for key in server.client.hkeys(b"catalogue:requests:lease:" + worker))
    return 0


def test_retries_waiting_for_their_backoff_survive_their_worker(
        site: Any, make_workers: Any, redis_server: RedisServer) -> None:
    """A worker SIGKILLed while its retries wait out a 30 s Retry-After: the next worker crawls them all."""
    workers = make_workers(site)
    (first,) = workers.start()
    wait_for(lambda: workers.items(1) >= 20, timeout=120, what="20 items")
    # The pause is the job's (the next worker waits out what is left of it), as long as the lease timeout.
    site.set_faults(outage={"duration": 3600, "mode": "503", "retry_after": 30})
    wait_for(lambda: held_retries(redis_server, first.pid) >= 1, timeout=120, what="a retry held in Redis")
    held = held_retries(redis_server, first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    site.reset()
    workers.start()
    workers.wait()
    assert "Spider closed (finished)" in workers.log(2), workers.log(2)[-3000:]
    assert stats_of(workers.log(2))["resilience/redis/reclaimed"] >= held
    assert len(set(workers.skus())) == site.info()["live"]


def test_workers_wait_for_a_redis_killed_and_restarted_from_its_aof(
        site: Any, make_workers: Any, redis_server: RedisServer) -> None:
    """redis-server SIGKILLed mid-crawl: the workers wait, reconnect once it is back from its AOF, and lose nothing."""
    workers = make_workers(site)
    workers.start(3)
    wait_for(lambda: workers.total_items() >= 40, timeout=120, what="40 items")
    redis_server.kill()
    wait_for(lambda: all("Lost Redis" in workers.log(n) for n in (1, 2, 3)), timeout=120,
             what="every worker to notice the outage")
    assert all(process.poll() is None for process in workers.processes)  # waiting, not crashed
    redis_server.start()
    workers.wait()
    for n in (1, 2, 3):
        log = workers.log(n)
        assert "Spider closed (finished)" in log, log[-3000:]
        assert stats_of(log)["resilience/redis/reconnects"] >= 1
    items = workers.skus()
    assert len(set(items)) == site.info()["live"]
    assert not redis_server.client.keys("catalogue:requests:lease:*")


ABORT = {
    "RESILIENCE_ABORT_FAILURE_RATE": 50,
    "RESILIENCE_ABORT_MIN_OPERATIONS": 10,
    "RESILIENCE_ABORT_WINDOW_SIZE": 20,
    # Few, quick retries: the test is about the shared decision, not about the backoff's length.
    "RESILIENCE_RETRY_MAX_ATTEMPTS": 2,
    "RESILIENCE_RETRY_BASE_DELAY": 0.1,
    "RESILIENCE_RETRY_MAX_DELAY": 0.1,
}


def test_a_dead_site_stops_every_worker_with_one_reason_and_a_restart_finishes(
        site: Any, make_workers: Any, redis_server: RedisServer) -> None:
    """Three workers, the site dies: all stop with resilience_failure_rate; once it is back a restart finishes."""
    workers = make_workers(site, ABORT)
    workers.start(1)
    # The two others take two requests at a time and abort only above a failure rate of
    # 100 %, which no rate reaches: the first worker decides, they can only follow. (With
    # probes 0.1 s apart, a higher minimum of operations alone is soon reached by the
    # turns their parked requests lose.)
    workers.start(2, CONCURRENT_REQUESTS=2, RESILIENCE_ABORT_FAILURE_RATE=100)
    wait_for(lambda: workers.total_items() >= 20, timeout=120, what="20 items")
    site.set_faults(outage={"duration": 3600, "mode": "503"})
    workers.wait()
    record = redis_server.client.get("catalogue:requests:abort").decode()
    _, reason, decided_by = record.split("\t")
    assert reason == "resilience_failure_rate"
    assert f":{workers.processes[0].pid}:" in decided_by
    for n in (1, 2, 3):
        assert stats_of(workers.log(n))["finish_reason"] == "resilience_failure_rate", workers.log(n)[-3000:]
    for n in (2, 3):
        assert f"Worker {decided_by} decided to stop the job (resilience_failure_rate)" in workers.log(n)
    assert redis_server.client.zcard("catalogue:requests") > 0  # what was left, back in the queue
    assert not redis_server.client.keys("catalogue:requests:lease:*")

    site.reset()
    workers.start(3)
    workers.wait()
    for n in (4, 5, 6):
        assert "Spider closed (finished)" in workers.log(n), workers.log(n)[-3000:]
    assert len(set(workers.skus())) == site.info()["live"]


def test_the_supervisor_restarts_a_killed_worker_which_finishes_with_the_others(
        site: Any, make_workers: Any, redis_server: RedisServer) -> None:
    """Two supervised workers, own job directories: one's crawl is SIGKILLed, restarted, and the job ends."""
    workers = make_workers(site)
    workers.start(2, supervised=True)
    wait_for(lambda: workers.total_items() >= 20 and any(
        redis_server.client.hlen(b"catalogue:requests:lease:" + worker)
        for worker in redis_server.client.zrange("catalogue:requests:workers", 0, -1)), timeout=120,
        what="a worker holding leases")
    children = redis_server.client.zrange("catalogue:requests:workers", 0, -1)
    victim = next(w for w in children if redis_server.client.hlen(b"catalogue:requests:lease:" + w))
    os.kill(int(victim.decode().split(":")[1]), signal.SIGKILL)  # the crawl, not its supervisor
    workers.wait()
    assert all(process.returncode == 0 for process in workers.processes)
    logs = workers.log(1) + workers.log(2)
    assert "killed by SIGKILL; restarting" in logs and logs.count("Crawl finished (finished)") == 2
    assert len(set(workers.skus())) == site.info()["live"]
