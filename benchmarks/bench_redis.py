"""Many workers on scrapy-redis: throughput, a worker's death, and what plain scrapy-redis loses.

A real redis-server (append-only file on) and real ``scrapy crawl catalogue``
workers of example_project against a local demo site, measured in the same run:

1. Throughput with 1, 2 and 4 workers: plain scrapy-redis (no add-on), the
   add-on with ``RESILIENCE_REDIS_ENABLED=False`` (scrapy-redis's queue, our
   retry and monitor), and the add-on's leased queue. Items per second of wall
   time, start-up included, and each worker's share of the items.
2. A worker's death: three workers on the leased queue, one SIGKILLed while it
   holds leases; the seconds from the kill to its requests being put back
   (reclaimed) and to the last of them being fetched again (the site's log),
   with the default lease timeout and with the shortest one (5 s).
3. The same kill (of the busiest worker, restarted once) with plain
   scrapy-redis and with the leased queue: the items
   the uninterrupted crawl has and the killed one lacks, and the duplicates.

    python benchmarks/bench_redis.py [--products 600] [--seed 7]
"""

from __future__ import annotations

import argparse
import pickle
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "example_project")]

from checkpoint_helpers import wait_for  # noqa: E402  (tests/ is on the path only from here on)
from conftest import ScrapyProjectEnv  # noqa: E402
from demosite_client import DemoSite  # noqa: E402
from redis_helpers import RedisServer, Workers  # noqa: E402

VARIANTS = {
    "scrapy-redis": {"ADDONS": {}},
    "add-on, scrapy-redis's queue": {"RESILIENCE_REDIS_ENABLED": False},
    "add-on, leased queue": {},
}
QUEUE = "catalogue:requests"


def run_workers(site: Any, server: RedisServer, tmp: Path, count: int, settings: dict[str, Any]) -> Workers:
    server.client.flushall()
    env = ScrapyProjectEnv(site.url)
    workers = Workers(env, tmp, server.url, settings={"LOG_LEVEL": "WARNING", **settings})
    workers.start(count)
    return workers


def throughput(site: Any, server: RedisServer, tmp: Path) -> None:
    print("Throughput (items/s of wall time, start-up included; items per worker)")
    for count in (1, 2, 4):
        for name, settings in VARIANTS.items():
            started = time.monotonic()
            workers = run_workers(site, server, Path(tempfile.mkdtemp(dir=tmp)), count, settings)
            workers.wait(timeout=600)
            elapsed = time.monotonic() - started
            items = workers.skus()
            shares = [workers.items(n) for n in range(1, count + 1)]
            print(f"  {count} worker(s)  {name:30}  {len(set(items)) / elapsed:7.1f} items/s  "
                  f"{len(set(items))} items in {elapsed:5.1f} s  per worker {shares}")


def leased_urls(server: RedisServer, pid: int) -> list[str]:
    """The URLs leased by worker process ``pid`` (its lease hash: score, crashes, payload)."""
    for worker in server.client.zrange(QUEUE + ":workers", 0, -1):
        if f":{pid}:".encode() in worker:
            values = server.client.hvals(QUEUE.encode() + b":lease:" + worker)
            return [pickle.loads(value.split(b"\n", 2)[2])["url"] for value in values]
    return []


def kill_when_leasing(workers: Workers, server: RedisServer, victim: int, moment: int) -> tuple[float, list[str]]:
    process = workers.processes[victim - 1]
    wait_for(lambda: workers.total_items() >= moment and leased_urls(server, process.pid),
             timeout=300, what="the victim to hold leases")
    urls = leased_urls(server, process.pid)
    process.send_signal(signal.SIGKILL)
    killed = time.time()
    process.wait(timeout=30)
    return killed, urls


def death(site: Any, server: RedisServer, tmp: Path, seed: int) -> None:
    print("A worker's death (3 workers on the leased queue, one SIGKILLed while holding leases)")
    for timeout in (30, 5):
        site.reset()
        site.set_faults(slow={"fraction": 0.25, "delay": 0.1})
        rng = random.Random(seed)
        workers = run_workers(site, server, Path(tempfile.mkdtemp(dir=tmp)), 3,
                              {"RESILIENCE_REDIS_LEASE_TIMEOUT": timeout})
        killed, urls = kill_when_leasing(workers, server, 1, rng.randint(20, 60))
        wait_for(lambda: server.client.hlen(QUEUE + ":dead"), timeout=300, what="the reclaim")
        reclaimed = time.time()
        workers.wait(timeout=600)
        paths = {url.split("/", 3)[3] for url in urls}
        again = {}
        for entry in site.log():
            path = entry["path"].lstrip("/")
            if path in paths and entry["t"] > killed and path not in again:
                again[path] = entry["t"] - killed
        delays = sorted(again.values()) or [float("nan")]
        print(f"  lease timeout {timeout:2d} s: {len(urls)} requests leased at the kill, put back after "
              f"{reclaimed - killed:4.1f} s, fetched again after {min(delays):4.1f}-{max(delays):4.1f} s "
              f"(median {statistics.median(delays):4.1f} s); {len(delays)}/{len(urls)} fetched again")


def losses(site: Any, server: RedisServer, tmp: Path, seed: int) -> None:
    print("The same kill (3 workers, the busiest SIGKILLed mid-crawl, restarted once)")
    live = site.info()["live"]
    for name in ("scrapy-redis", "add-on, leased queue"):
        site.reset()
        site.set_faults(slow={"fraction": 0.25, "delay": 0.1})
        rng = random.Random(seed)
        workers = run_workers(site, server, Path(tempfile.mkdtemp(dir=tmp)), 3, VARIANTS[name])
        moment = rng.randint(20, 60)
        wait_for(lambda workers=workers, moment=moment: workers.total_items() >= moment, timeout=300,
                 what=f"{moment} items")
        # The busiest worker: plain scrapy-redis often leaves the others idle, and they would lose nothing.
        busiest = max((n for n in (1, 2, 3) if workers.processes[n - 1].poll() is None), key=workers.items)
        process = workers.processes[busiest - 1]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        workers.start()
        workers.wait(timeout=600)
        items = workers.skus()
        duplicates = sum(n - 1 for n in Counter(items).values())
        print(f"  {name:22}  {live - len(set(items)):4d} of {live} items lost, {duplicates} duplicates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        site = DemoSite.start("--products", str(args.products))
        try:
            throughput(site, server, Path(tmp))
            death(site, server, Path(tmp), args.seed)
            losses(site, server, Path(tmp), args.seed)
        finally:
            site.stop()
            server.kill()


if __name__ == "__main__":
    main()
