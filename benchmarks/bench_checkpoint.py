"""Checkpoint cost at 10k / 100k / 1M pending requests, resume time, memory, and throughput.

For each frontier size, three fresh processes (a reactor cannot restart):

- ``plain``: Scrapy without the add-on schedules N requests (one request hangs
  in the only download slot, so the N stay pending); RSS growth per request.
- ``checkpoint``: the same with the add-on and checkpoints on; RSS growth per
  request, then the first checkpoint (it seals the journal of all N
  schedulings, and compacts it), then a steady-state one after 1,000 more
  requests; each with the longest reactor stall seen by a 1 ms probe.
- ``resume``: a new process on the same directory; time until the job is
  loaded and until the crawl runs again with its scheduler filled from them
  (the rest wait in the refill queue), longest stall, memory.

Then the throughput of example_project's catalogue crawl with checkpoints
every 5 s against the same crawl without the add-on, and with the add-on but
no checkpoints (alternating rounds, fresh processes), as ratios: by Scrapy's
own ``elapsed_time_seconds`` (the crawl), by the process's wall clock
(interpreter and imports included), and by CPU time.

    python benchmarks/bench_checkpoint.py [--sizes 10000,100000,1000000] [--rounds 3] [--products 3000]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MB = 1 << 20


def start_site(*args: str) -> Any:
    sys.path.insert(0, str(REPO / "example_project"))
    from demosite_client import DemoSite

    return DemoSite.start(*args)


# -- child processes -------------------------------------------------------------


def child(mode: str, site: str, size: int, job: str) -> None:
    started = time.perf_counter()  # times count from the process's start: imports and all
    from scrapy.utils.reactor import install_reactor

    # Before anything imports twisted.internet.reactor (monitor/actions.py does, at import time).
    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    import psutil
    from scrapy import Request, Spider, signals
    from scrapy.crawler import CrawlerProcess
    from scrapy.utils.asyncio import create_looping_call, sleep
    from scrapy.utils.defer import deferred_from_coro

    process = psutil.Process()
    figures: dict[str, Any] = {"mode": mode, "size": size}
    libc = ctypes.CDLL(ctypes.util.find_library("c"))

    def rss_mb() -> float:
        # Count live memory, not the allocator's high-water mark: free what is
        # garbage and give freed pages back to the system first, in every mode alike.
        gc.collect()
        libc.malloc_trim(0)
        return process.memory_info().rss / MB

    class Probe:
        """The longest gap between two ticks of a 1 ms looping call: the reactor's longest stall."""

        def __init__(self) -> None:
            self.last = time.perf_counter()
            self.worst = 0.0
            self.worst_gc = 0.0  # Python's garbage collector stops every thread: Scrapy's own pauses
            self._gc_started = 0.0
            gc.callbacks.append(self.on_gc)
            self.loop = create_looping_call(self.tick)
            self.loop.start(0.001, now=True)

        def on_gc(self, phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                self._gc_started = time.perf_counter()
            else:
                self.worst_gc = max(self.worst_gc, time.perf_counter() - self._gc_started)

        def tick(self) -> None:
            now = time.perf_counter()
            self.worst = max(self.worst, now - self.last)
            self.last = now

        def reset(self) -> None:
            self.last, self.worst, self.worst_gc = time.perf_counter(), 0.0, 0.0

    class FrontierSpider(Spider):
        name = "frontier"

        async def start(self) -> AsyncIterator[Request]:
            if mode != "resume":
                yield Request(site + "/fault/hang", dont_filter=True)  # holds the only download slot
                figures["rss_before_mb"] = rss_mb()
                for i in range(size):
                    yield Request(f"{site}/product/{i}.html?b={i}")

    settings = {
        # One request at a time, then an hour's wait: the frontier stays pending in every mode.
        "CONCURRENT_REQUESTS": 1, "DOWNLOAD_DELAY": 3600, "RANDOMIZE_DOWNLOAD_DELAY": False,
        "DOWNLOAD_TIMEOUT": 3600, "LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": False,
        "MEMUSAGE_ENABLED": False, "RETRY_ENABLED": False,
    }
    if mode != "plain":
        settings |= {"ADDONS": {"scrapy_resilience.Addon": 500}, "RESILIENCE_CHECKPOINT_DIR": job,
                     "RESILIENCE_CHECKPOINT_INTERVAL": 86400, "RESILIENCE_MONITOR_ENABLED": False}
    crawler_process = CrawlerProcess(settings)  # installs the asyncio reactor: import our modules after it
    from scrapy_resilience.checkpoint.extension import CheckpointExtension
    from scrapy_resilience.stats import RESUME_REQUESTS_RESTORED

    crawler = crawler_process.create_crawler(FrontierSpider)

    probe: Probe | None = None

    def spider_opened() -> None:
        nonlocal probe
        probe = Probe()  # from the start of the resume: loading the job runs beside it, in a thread

    async def measure() -> None:
        assert probe is not None
        scheduler = crawler.engine.scheduler
        if mode == "resume":
            # Restored requests go to the scheduler as it drains: resumed once it holds its fill.
            refill = crawler.get_extension(CheckpointExtension).refill
            while len(refill) and len(scheduler) < refill.low_water:
                await sleep(0.05)
            figures["restored"] = crawler.stats.get_value(RESUME_REQUESTS_RESTORED, 0)
            figures["waiting"] = len(refill)
        else:
            while len(scheduler) < size:
                await sleep(0.05)
        figures["pending"] = len(scheduler)
        # Scheduling N requests (or putting them back) stalls any Scrapy: full GC passes over them.
        figures["schedule_stall_ms"], figures["schedule_gc_ms"] = probe.worst * 1000, probe.worst_gc * 1000
        if mode == "resume":
            figures["resumed_s"] = time.perf_counter() - started
        figures["rss_after_mb"] = rss_mb()
        if mode == "checkpoint":
            extension = crawler.get_extension(CheckpointExtension)
            for label, more in (("first", 0), ("steady", 1000)):
                for i in range(more):
                    crawler.engine.crawl(Request(f"{site}/product/{i}.html?more={i}"))
                await sleep(0.3)
                probe.reset()
                t0 = time.perf_counter()
                checkpoint = await extension.save_checkpoint()
                figures[f"{label}_checkpoint_s"] = time.perf_counter() - t0
                figures[f"{label}_stall_ms"] = probe.worst * 1000
                figures[f"{label}_gc_ms"] = probe.worst_gc * 1000
                figures[f"{label}_sequence"] = checkpoint.sequence_number if checkpoint else None
        print("FIGURES " + json.dumps(figures), flush=True)
        os._exit(0)  # a crash, as far as the job is concerned: the resume child picks it up

    def opened() -> None:
        figures["loaded_s"] = time.perf_counter() - started
        deferred_from_coro(measure())

    crawler.signals.connect(spider_opened, signal=signals.spider_opened)
    crawler.signals.connect(opened, signal=signals.engine_started)
    crawler_process.crawl(crawler)
    crawler_process.start()


def run_child(mode: str, site: str, size: int, job: str) -> dict[str, Any]:
    output = subprocess.run([sys.executable, __file__, "--child", mode, site, str(size), job], capture_output=True,
                            text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=3600)
    for line in output.stdout.splitlines():
        if line.startswith("FIGURES "):
            return json.loads(line[8:])
    raise RuntimeError(f"{mode} child failed:\n{output.stdout[-2000:]}\n{output.stderr[-4000:]}")


# -- throughput ------------------------------------------------------------------------


def variant_settings(variant: str, tmp: Path) -> list[str]:
    """The ``-s`` arguments of a variant: plain Scrapy, the add-on, the add-on with checkpoints (fresh job)."""
    return {
        "plain": ["-s", "ADDONS={}"],
        "add-on": [],  # retry and monitor, no checkpoints: separates the checkpoints' own cost
        "checkpoints": ["-s", f"RESILIENCE_CHECKPOINT_DIR={tmp / variant / str(time.monotonic_ns())}",
                        "-s", "RESILIENCE_CHECKPOINT_INTERVAL=5"],
    }[variant]


def catalogue_crawl(site_url: str, settings: list[str], tmp: Path) -> tuple[dict[str, Any], int, float, float]:
    """One catalogue crawl of example_project with ``-s`` ``settings``: (final stats, items, wall, CPU seconds).

    Wall and CPU time are the process's own (interpreter and imports included).
    """
    name = str(time.monotonic_ns())
    feed, stats_file = tmp / f"{name}.jsonl", tmp / f"{name}-stats.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scrapy", "crawl", "catalogue", "-s", "LOG_LEVEL=WARNING",
                    "-s", f"STATS_DUMP_FILE={stats_file}", "-o", f"{feed}:jsonlines", *settings],
                   cwd=REPO / "example_project", check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO), "DEMO_SITE_URL": site_url})
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(stats_file.read_text()), len(feed.read_text().splitlines()), elapsed, cpu


def crawl_rate(site_url: str, variant: str, tmp: Path) -> tuple[float, float, float]:
    """(pages per second of crawl, per second of the whole process, per CPU second) of one catalogue crawl.

    "Of crawl" is Scrapy's own ``elapsed_time_seconds`` (spider opened to
    closed: loading the job and the final checkpoint included, interpreter and
    import start-up not); the process's wall clock counts those too.
    """
    stats, pages, elapsed, cpu = catalogue_crawl(site_url, variant_settings(variant, tmp), tmp)
    return pages / float(stats["elapsed_time_seconds"]), pages / elapsed, pages / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--products", type=int, default=3000)
    args = parser.parse_args()
    site = start_site("--products", str(args.products), "--dead-links", "0")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for size in (int(s) for s in args.sizes.split(",")):
                job = str(Path(tmp) / f"job-{size}")
                plain = run_child("plain", site.url, size, job)
                ours = run_child("checkpoint", site.url, size, job)
                resumed = run_child("resume", site.url, size, job)
                per_plain = (plain["rss_after_mb"] - plain["rss_before_mb"]) * MB / size
                per_ours = (ours["rss_after_mb"] - ours["rss_before_mb"]) * MB / size
                print(f"{size:>9,} pending: Scrapy {per_plain:,.0f} B/request, with checkpoints "
                      f"{per_ours:,.0f} B/request: {per_ours - per_plain:+,.0f} B/request beyond Scrapy's own")
                print(f"{'':>18}scheduling them: longest stall without the add-on {plain['schedule_stall_ms']:.0f} "
                      f"ms (GC {plain['schedule_gc_ms']:.0f} ms), with it {ours['schedule_stall_ms']:.0f} ms "
                      f"(GC {ours['schedule_gc_ms']:.0f} ms)")
                print(f"{'':>18}first checkpoint {ours['first_checkpoint_s']:.2f}s (longest stall "
                      f"{ours['first_stall_ms']:.0f} ms, longest GC pause {ours['first_gc_ms']:.0f} ms); steady-state "
                      f"{ours['steady_checkpoint_s']:.3f}s (longest stall {ours['steady_stall_ms']:.0f} ms, "
                      f"GC {ours['steady_gc_ms']:.0f} ms)")
                print(f"{'':>18}resume of {resumed['restored']:,} requests: job loaded in {resumed['loaded_s']:.2f}s, "
                      f"crawling with {resumed['pending']:,} in the scheduler and {resumed['waiting']:,} waiting to "
                      f"refill it after {resumed['resumed_s']:.2f}s (longest stall, loading included, "
                      f"{resumed['schedule_stall_ms']:.0f} ms, GC {resumed['schedule_gc_ms']:.0f} ms); "
                      f"RSS {resumed['rss_after_mb']:,.0f} MB against "
                      f"{plain['rss_after_mb']:,.0f} MB for Scrapy holding them")
            rates: dict[str, list[tuple[float, float, float]]] = {"plain": [], "add-on": [], "checkpoints": []}
            for round_number in range(args.rounds):
                order = list(rates) if round_number % 2 == 0 else list(reversed(rates))
                for variant in order:
                    rates[variant].append(crawl_rate(site.url, variant, Path(tmp)))
                    crawl, process, cpu = rates[variant][-1]
                    print(f"round {round_number + 1} {variant:<11} {crawl:.1f} pages/s of crawl, {process:.1f} "
                          f"pages/s of process, {cpu:.1f} pages per CPU second")
    finally:
        site.stop()
    if not args.rounds:
        return

    def ratio(variant: str, base: str, index: int) -> float:
        return statistics.median(r[index] for r in rates[variant]) / statistics.median(r[index] for r in rates[base])

    for base, label in (("plain", "throughput with checkpoints every 5 s / without the add-on"),
                        ("add-on", "  of which the checkpoints alone (add-on with / without them)")):
        print(f"{label}: {ratio('checkpoints', base, 0):.3f} by crawl time (goal >= 0.97), "
              f"{ratio('checkpoints', base, 1):.3f} by the process's wall clock (start-up included), "
              f"{ratio('checkpoints', base, 2):.3f} by CPU time")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
