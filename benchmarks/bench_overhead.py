"""What the add-on costs a CPU-bound crawl, and a callback that builds a big frontier, against plain Scrapy.

- **Throughput.** example_project's catalogue crawl of a local demo site with
  no latency (``FAST_SITE``) and no faults (``--products`` item pages, 5,000 by default, plus
  their list pages): the crawl is CPU-bound, so every microsecond of ours
  per request shows. With the add-on and checkpoints every 5 s (a fresh job
  directory each run) against the same crawl without the add-on, alternating
  rounds in fresh processes, the site on one core and the crawls on another
  (see ``crawling_core``). Prints each round's pages per second
  (``response_received_count / elapsed_time_seconds``), the median of the
  per-round ratios with their spread, their mean and standard deviation
  (0.07 to 0.13 on this shared machine, 0.07 even between two runs of plain
  Scrapy in a row; the median of a run of 21 to 31 rounds moved by ±0.06
  between runs of the same code in one evening, more than the rounds'
  spread alone explains: the machine's speed drifts between runs too), and
  the CPU time per page (the process's, imports included) ours minus
  Scrapy's; then the CPU of start-up
  and shutdown alone (the same crawl closed after its first page,
  ``--startup-rounds`` alternating rounds), to say how much of the difference
  per page is paid once per crawl.
- **A big frontier.** One callback yields ``--frontier`` requests (200,000 by
  default) at once; the time from the callback's start until the scheduler
  holds them all, and the process's peak RSS, with the add-on and checkpoints
  against plain Scrapy (the first child hangs in the only download slot: the
  others stay pending). Also the time spent in garbage collection within that
  window (Python's full collections walk the whole heap: at this size they take
  a sixth of plain Scrapy's time, walking every pending request; ours keeps
  them as text past 10,000 a queue) and the rest of the time, ours against Scrapy's;
  then the time to pop ``POPPED`` of them back out of the scheduler (past
  10,000 requests a queue of ours keeps their JSON and rebuilds each request).
- **Instructions** (``--instructions SMALL,BIG``): the frontier children run
  under valgrind, whose count of instructions does not move with the load of
  a shared machine (this one's wall clock drifts ±10 % between rounds); the
  instructions per scheduled request are the difference between two sizes,
  so start-up cancels out; ``--crawl-instructions SMALL,BIG`` does the same
  for the catalogue crawl, per page, from sites of two sizes. This is the
  cost of our code alone; the time ratios add the memory effects (the
  collector's full passes walk our modules' objects too) and the add-on's
  threads, which share the crawl's core.

    python benchmarks/bench_overhead.py [--rounds 21] [--products 5000] [--startup-rounds 3]
        [--frontier 200000] [--frontier-rounds 1] [--instructions 5000,25000] [--crawl-instructions 300,1300]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_checkpoint import catalogue_crawl, variant_settings

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("plain", "checkpoints")
# The demo site with TCP_NODELAY: it sends headers and body as two writes, and
# with Nagle's algorithm each body waits for the crawler's delayed ACK (40 ms),
# which caps a crawl at about 200 pages/s, far from CPU-bound. Set here only:
# the test suite's timings are left as they are.
FAST_SITE = "import sys, demosite; demosite.Handler.disable_nagle_algorithm = True; demosite.main(sys.argv[1:])"


# On a machine of two cores or more, the demo site gets the first and the crawls
# the second (``crawling_core``): a real site runs on another machine, and two
# busy processes sharing cores at the scheduler's whim moved a round's rate by
# ±15 % here. The add-on's threads share the crawler's core.
_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SITE_CORES, CRAWL_CORES = ({_CORES[0]}, {_CORES[1]}) if len(_CORES) >= 2 else (set(_CORES), set(_CORES))


def _on_site_core() -> None:
    if SITE_CORES:
        os.sched_setaffinity(0, SITE_CORES)


@contextlib.contextmanager
def crawling_core() -> Iterator[None]:
    """Within it, this process and the crawls it starts run on the crawlers' core."""
    if not CRAWL_CORES:
        yield
        return
    everywhere = os.sched_getaffinity(0)
    os.sched_setaffinity(0, CRAWL_CORES)
    try:
        yield
    finally:
        os.sched_setaffinity(0, everywhere)


def start_fast_site(*args: str) -> Any:
    sys.path.insert(0, str(REPO / "example_project"))
    from demosite_client import DemoSite

    process = subprocess.Popen([sys.executable, "-c", FAST_SITE, "--port", "0", *args], cwd=REPO / "example_project",
                               stdout=subprocess.PIPE, text=True, preexec_fn=_on_site_core)
    assert process.stdout is not None
    line = process.stdout.readline()  # LISTENING URL, or nothing if the site died
    if not line.startswith("LISTENING "):
        process.kill()
        raise RuntimeError(f"the demo site did not start: {line!r}")
    return DemoSite(process, line.split()[1])


# -- a big frontier, in a child process --------------------------------------------


def frontier_child(variant: str, site: str, size: int, job: str, popped: int) -> None:
    from scrapy import Request, Spider, signals
    from scrapy.crawler import CrawlerProcess
    from scrapy.http import Response
    from scrapy.utils.asyncio import sleep
    from scrapy.utils.defer import deferred_from_coro

    figures: dict[str, Any] = {"variant": variant}

    class FrontierSpider(Spider):
        name = "frontier"
        start_urls = [site + "/catalogue/page-1.html"]  # noqa: RUF012 (Scrapy's own convention)

        def parse(self, response: Response, **kwargs: Any) -> Any:
            figures["callback_started"], figures["cpu_started"] = time.perf_counter(), time.process_time()
            # First out of the scheduler (it is LIFO otherwise): holds the only download slot.
            yield Request(site + "/fault/hang", dont_filter=True, priority=1)
            for i in range(size):
                yield Request(f"{site}/product/{i}.html?g={i}", callback=self.parse_product)

        def parse_product(self, response: Response) -> Any:
            raise AssertionError("never downloaded: the frontier stays pending")

    # Garbage collection inside the window: a big part of the time at this size, and the part
    # that follows the heap's layout rather than the instructions run.
    gc_started: list[float] = []

    def gc_timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started and "callback_started" in figures:
            figures["gc_s"] = figures.get("gc_s", 0.0) + time.perf_counter() - gc_started[0]

    gc.callbacks.append(gc_timer)
    settings: dict[str, Any] = {
        # The list page, then a hanging page in the only download slot: the frontier stays pending.
        "CONCURRENT_REQUESTS": 1, "DOWNLOAD_TIMEOUT": 3600, "LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
    }
    if variant == "checkpoints":
        settings |= {"ADDONS": {"scrapy_resilience.Addon": 500}, "RESILIENCE_CHECKPOINT_DIR": job,
                     "RESILIENCE_CHECKPOINT_INTERVAL": float(os.environ.get("BENCH_CHECKPOINT_INTERVAL", 5))}
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(FrontierSpider)

    async def measure() -> None:
        # The list page, the hanging page, then the whole frontier.
        while crawler.stats.get_value("scheduler/enqueued", 0) < size + 2:
            await sleep(0.01)
        figures["schedule_s"] = time.perf_counter() - figures.pop("callback_started")
        figures.setdefault("gc_s", 0.0)
        figures["schedule_cpu_s"] = time.process_time() - figures.pop("cpu_started")  # every thread's
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        # Then taking some back out, as the engine does: a queue of ours past 10,000
        # requests rebuilds each from its JSON (the price of its smaller heap).
        if popped:
            scheduler, started = crawler.engine.scheduler, time.perf_counter()
            for _ in range(popped):
                scheduler.next_request()
            figures["pop_us"] = (time.perf_counter() - started) / popped * 1e6
        print("FIGURES " + json.dumps(figures), flush=True)
        os._exit(0)

    def engine_started() -> None:
        deferred_from_coro(measure())  # not awaited: the engine's start waits for its handlers

    crawler.signals.connect(engine_started, signal=signals.engine_started)
    process.crawl(crawler)
    process.start()


POPPED = 20_000  # requests taken back out of the scheduler after the frontier is built


def frontier_command(variant: str, site: str, size: int, tmp: Path, popped: int = 0) -> list[str]:
    return [sys.executable, __file__, "--child", variant, site, str(size), str(tmp / f"frontier-{time.monotonic_ns()}"),
            str(popped)]


def frontier_run(variant: str, site: str, size: int, tmp: Path) -> dict[str, Any]:
    command = frontier_command(variant, site, size, tmp, min(size, POPPED))
    output = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in output.stdout.splitlines():
        if line.startswith("FIGURES "):
            return json.loads(line[8:])
    raise RuntimeError(f"{variant} frontier child failed:\n{output.stdout[-2000:]}\n{output.stderr[-4000:]}")


# Valgrind slows a frontier child about twentyfold: checkpoints every 100 s of its time are every 5 s at full speed.
VALGRIND_CHECKPOINT_INTERVAL = "100"


def counted(what: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    """(instructions, stdout) of ``command`` under valgrind: the same count on a busy machine (hash seed fixed)."""
    output = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                             *command], cwd=cwd, capture_output=True, text=True, check=False, timeout=7200,
                            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0", **env})
    match = re.search(r"I\s+refs:\s+([\d,]+)", output.stderr)
    if match is None or output.returncode != 0:
        raise RuntimeError(f"{what} under valgrind failed:\n{output.stderr[-3000:]}")
    return int(match.group(1).replace(",", "")), output.stdout


def instructions(variant: str, site: str, size: int, tmp: Path) -> int:
    """The instructions a frontier child runs, whole process."""
    count, stdout = counted(f"{variant} frontier child", frontier_command(variant, site, size, tmp),
                            {"BENCH_CHECKPOINT_INTERVAL": VALGRIND_CHECKPOINT_INTERVAL})
    if "FIGURES " not in stdout:
        raise RuntimeError(f"{variant} frontier child under valgrind printed no figures")
    return count


# Valgrind slows the catalogue crawl about twelvefold (30 pages/s against 365).
# The add-on's periodic work (the "done" sweep every 0.05 s, the monitor's
# reading and the checkpoint every 5 s) would then run twelve times per page as
# often as at full speed: under valgrind it runs twelve times less often.
CRAWL_SLOWDOWN = 12
SLOWED_SCRAPY = ("import sys; from scrapy_resilience.checkpoint import extension; "
                 f"extension.SWEEP_INTERVAL *= {CRAWL_SLOWDOWN}; "
                 "from scrapy.cmdline import execute; sys.argv[0] = 'scrapy'; execute()")


def crawl_instructions(variant: str, products: int, tmp: Path) -> tuple[int, int]:
    """(instructions, responses) of one catalogue crawl of a ``products``-item site, the crawler under valgrind."""
    site = start_fast_site("--products", str(products), "--dead-links", "0")
    name = f"{variant}-{products}-{time.monotonic_ns()}"
    stats_file = tmp / f"{name}-stats.json"
    scrapy = ["-m", "scrapy"] if variant == "plain" else ["-c", SLOWED_SCRAPY]  # plain Scrapy imports nothing of ours
    try:
        count, _ = counted(f"{variant} crawl", [
            sys.executable, *scrapy, "crawl", "catalogue", "-s", "LOG_LEVEL=WARNING",
            "-s", f"STATS_DUMP_FILE={stats_file}", "-o", f"{tmp / name}.jsonl:jsonlines",
            *variant_settings(variant, tmp), "-s", f"RESILIENCE_CHECKPOINT_INTERVAL={5 * CRAWL_SLOWDOWN}",
            "-s", f"RESILIENCE_MONITOR_INTERVAL={5 * CRAWL_SLOWDOWN}",
        ], {"DEMO_SITE_URL": site.url}, cwd=REPO / "example_project")
    finally:
        site.stop()
    return count, int(json.loads(stats_file.read_text())["response_received_count"])


def instructions_per_page(sizes: tuple[int, int], tmp: Path) -> dict[str, float]:
    """Per variant, the instructions per page of the catalogue crawl: the difference of two site sizes."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = {(variant, size): pool.submit(crawl_instructions, variant, size, tmp)
                  for variant in VARIANTS for size in sizes}
        per_page = {}
        for variant in VARIANTS:
            (small, small_pages), (big, big_pages) = (counts[variant, size].result() for size in sizes)
            per_page[variant] = (big - small) / (big_pages - small_pages)
        return per_page


def instructions_per_request(site: str, sizes: tuple[int, int], tmp: Path) -> dict[str, float]:
    """Per variant, the instructions per scheduled request: the difference of two sizes, so start-up cancels out."""
    with ThreadPoolExecutor(max_workers=2) as pool:  # one child per core; the counts do not depend on it
        counts = {(variant, size): pool.submit(instructions, variant, site, size, tmp)
                  for variant in VARIANTS for size in sizes}
        return {variant: (counts[variant, sizes[1]].result() - counts[variant, sizes[0]].result())
                / (sizes[1] - sizes[0]) for variant in VARIANTS}


# -- report ------------------------------------------------------------------------


def spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} (rounds {min(values):.{digits}f} to {max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--startup-rounds", type=int, default=3)
    parser.add_argument("--frontier", type=int, default=200_000)
    parser.add_argument("--frontier-rounds", type=int, default=1)
    parser.add_argument("--crawl-instructions", metavar="SMALL,BIG", default="",
                        help="also count the instructions per page of the catalogue crawl with valgrind, on sites "
                             "of these two sizes (300,1300: about 2 minutes); needs Debian's valgrind")
    parser.add_argument("--instructions", metavar="SMALL,BIG", default="",
                        help="also count the instructions per scheduled request with valgrind, from frontiers of "
                             "these two sizes (5000,25000: about 3 minutes); needs Debian's valgrind")
    args = parser.parse_args()
    site = start_fast_site("--products", str(args.products), "--dead-links", "0")
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu_us: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    responses_of: list[int] = []
    startup_cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    frontier: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    try:
        with tempfile.TemporaryDirectory() as tmp, crawling_core():
            for round_number in range(args.rounds):
                # Alternating: a drift of the shared machine's load hits both variants alike.
                for variant in VARIANTS if round_number % 2 == 0 else reversed(VARIANTS):
                    stats, _, _, cpu = catalogue_crawl(site.url, variant_settings(variant, Path(tmp)), Path(tmp))
                    responses = int(stats["response_received_count"])
                    responses_of.append(responses)
                    rates[variant].append(responses / float(stats["elapsed_time_seconds"]))
                    cpu_us[variant].append(cpu / responses * 1e6)
                    print(f"round {round_number + 1} {variant:<11} {rates[variant][-1]:6.1f} pages/s, "
                          f"{cpu_us[variant][-1]:6.0f} µs CPU per page ({responses} responses)", flush=True)
            for round_number in range(args.startup_rounds):
                for variant in VARIANTS if round_number % 2 == 0 else reversed(VARIANTS):
                    one_page = [*variant_settings(variant, Path(tmp)), "-s", "CLOSESPIDER_PAGECOUNT=1"]
                    startup_cpu[variant].append(catalogue_crawl(site.url, one_page, Path(tmp))[3])
            for round_number in range(args.frontier_rounds):
                for variant in VARIANTS if round_number % 2 == 0 else reversed(VARIANTS):
                    frontier[variant].append(frontier_run(variant, site.url, args.frontier, Path(tmp)))
                    figures = frontier[variant][-1]
                    print(f"frontier {round_number + 1} {variant:<11} {figures['schedule_s']:6.2f} s to schedule "
                          f"{args.frontier:,} ({figures['schedule_cpu_s']:.2f} s CPU, {figures['gc_s']:.2f} s "
                          f"garbage collection), peak RSS {figures['peak_rss_mb']:,.0f} MB; "
                          f"{figures['pop_us']:.1f} µs per request popped", flush=True)
        with tempfile.TemporaryDirectory() as tmp:  # valgrind's children: one per core
            if args.crawl_instructions:
                products = tuple(int(size) for size in args.crawl_instructions.split(","))
                per_page = instructions_per_page((products[0], products[1]), Path(tmp))
            if args.instructions:
                small, big = (int(size) for size in args.instructions.split(","))
                per_request = instructions_per_request(site.url, (small, big), Path(tmp))
    finally:
        site.stop()
    if args.rounds:
        ratios = [ours / plain for ours, plain in zip(rates["checkpoints"], rates["plain"], strict=True)]
        extra = [ours - plain for ours, plain in zip(cpu_us["checkpoints"], cpu_us["plain"], strict=True)]
        deviation = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
        print(f"throughput with checkpoints every 5 s / plain Scrapy: {spread(ratios)} (goal >= 0.97), "
              f"mean {statistics.mean(ratios):.3f}, a round's standard deviation {deviation:.3f}; "
              f"plain {statistics.median(rates['plain']):.1f} pages/s, "
              f"ours {statistics.median(rates['checkpoints']):.1f}")
        print(f"CPU per page, ours minus Scrapy's: {spread(extra, 0)} µs "
              f"(Scrapy {statistics.median(cpu_us['plain']):.0f} µs)")
    if args.crawl_instructions:
        print(f"instructions per page of the catalogue crawl (valgrind, sites of {products[0]:,} to {products[1]:,} "
              f"items): plain {per_page['plain']:,.0f}, ours {per_page['checkpoints']:,.0f}, ours / Scrapy's "
              f"{per_page['checkpoints'] / per_page['plain']:.3f}")
    if args.rounds and args.startup_rounds:
        once = statistics.median(startup_cpu["checkpoints"]) - statistics.median(startup_cpu["plain"])
        pages = statistics.median(responses_of)
        print(f"  of which start-up and shutdown: {once * 1000:+.0f} ms CPU once per crawl "
              f"(Scrapy {statistics.median(startup_cpu['plain']) * 1000:.0f} ms), {once / pages * 1e6:+.0f} µs per "
              f"page of this crawl; the rest, {statistics.median(extra) - once / pages * 1e6:+.0f} µs, per page")
    if args.frontier_rounds:
        for key, label in (("schedule_s", "time to schedule"), ("schedule_cpu_s", "CPU time to schedule"),
                           ("peak_rss_mb", "peak RSS")):
            ratios = [o[key] / p[key] for o, p in zip(frontier["checkpoints"], frontier["plain"], strict=True)]
            print(f"{args.frontier:,} requests from one callback, {label} ours / Scrapy's: {spread(ratios)} "
                  f"(goal <= 1.10); plain {statistics.median(p[key] for p in frontier['plain']):,.1f}, "
                  f"ours {statistics.median(o[key] for o in frontier['checkpoints']):,.1f}")
        outside = [(o["schedule_s"] - o["gc_s"]) / (p["schedule_s"] - p["gc_s"])
                   for o, p in zip(frontier["checkpoints"], frontier["plain"], strict=True)]
        print(f"  garbage collection: plain {statistics.median(p['gc_s'] for p in frontier['plain']):.2f} s, ours "
              f"{statistics.median(o['gc_s'] for o in frontier['checkpoints']):.2f} s; the time outside it, ours / "
              f"Scrapy's: {spread(outside)}")
        print(f"  popping {min(args.frontier, POPPED):,} of them back out, µs per request: plain "
              f"{statistics.median(p['pop_us'] for p in frontier['plain']):.1f}, ours "
              f"{statistics.median(o['pop_us'] for o in frontier['checkpoints']):.1f}")
    if args.instructions:
        print(f"instructions per scheduled request (valgrind, {small:,} to {big:,} requests): plain "
              f"{per_request['plain']:,.0f}, ours {per_request['checkpoints']:,.0f}, ours / Scrapy's "
              f"{per_request['checkpoints'] / per_request['plain']:.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        frontier_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
    else:
        main()
