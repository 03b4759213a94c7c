"""The monitor's own cost: CPU time of one reading of a process tree with a browser running.

Starts Chromium through Playwright (as scrapy-playwright does, so the browser
is a descendant of this process) with a few pages open, then times
``resources.Sampler.read_blocking`` -- what the monitor runs in a thread every
``RESILIENCE_MONITOR_INTERVAL`` -- against what Scrapy's MemoryUsage reads
(``getrusage``, the main process only), in the same run.

    python benchmarks/bench_monitor.py [--pages 4] [--readings 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from collections.abc import Callable

from playwright.async_api import async_playwright

from scrapy_resilience.monitor.resources import Sampler

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
PAGE = "data:text/html," + "<p>" + "text " * 20000 + "</p><script>let a = [];for (let i=0;i<1e5;i++) a.push(i)</script>"


def cpu_ms(action: Callable[[], object], times: int) -> list[float]:
    """CPU time of this thread (user + system: reading /proc is kernel work) per call, in ms."""
    costs = []
    for _ in range(times):
        start = time.thread_time()
        action()
        costs.append((time.thread_time() - start) * 1000)
    return costs


async def main(pages: int, readings: int) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=LAUNCH_ARGS)
        context = await browser.new_context()
        for _ in range(pages):
            page = await context.new_page()
            await page.goto(PAGE)
        sampler = Sampler(os.getpid(), None)
        reading = sampler.read_blocking()
        ours = cpu_ms(sampler.read_blocking, readings)
        wall_start = time.perf_counter()
        for _ in range(readings):
            sampler.read_blocking()
        wall = (time.perf_counter() - wall_start) * 1000 / readings
        scrapys = cpu_ms(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, readings)
        await browser.close()

    mean, median = statistics.mean(ours), statistics.median(ours)
    print(f"process tree: {reading.snapshot.process_count} processes, {reading.memory_mb:.0f} MB (PSS),")
    print(f"  browser and other children hold {100 * reading.browser_share:.0f}% of it; {pages} pages open")
    print(f"one reading (ours):       CPU {mean:.2f} ms mean, {median:.2f} ms median, wall {wall:.2f} ms")
    print(f"one reading (MemoryUsage): CPU {statistics.mean(scrapys) * 1000:.1f} us mean (main process only)")
    print(f"ratio ours / MemoryUsage:  {mean / max(statistics.mean(scrapys), 1e-6):.0f}x")
    for interval in (1, 5, 30):
        print(f"share of one core at RESILIENCE_MONITOR_INTERVAL={interval:>2}: {mean / (interval * 10):.3f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--readings", type=int, default=50)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.pages, arguments.readings))
