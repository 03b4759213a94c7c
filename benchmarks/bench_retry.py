"""Throughput of our retry middleware against Scrapy's on a fault-free local site.

Same run, same site, alternating crawls (ours, Scrapy's, ours, ...) so that a
busy machine slows both alike; each crawl is a fresh process. Prints the
pages per second of each and the ratio of the medians (goal: >= 0.97), by wall
clock and by the crawl process's CPU time (the steadier of the two on a shared
machine, since the middleware's cost is CPU).

    python benchmarks/bench_retry.py [--rounds 5] [--pages 100]
"""

from __future__ import annotations

import argparse
import statistics

from retry_bench_common import run_child, start_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=100, help="list pages (20 products each)")
    args = parser.parse_args()
    site = start_site("--products", str(args.pages * 20), "--dead-links", "0")
    rates: dict[str, list[float]] = {"resilience": [], "scrapy": []}
    cpu_rates: dict[str, list[float]] = {"resilience": [], "scrapy": []}
    try:
        for round_number in range(args.rounds):
            order = ["resilience", "scrapy"] if round_number % 2 == 0 else ["scrapy", "resilience"]
            for variant in order:
                figures = run_child(variant, site.url, args.pages)
                rate = figures["responses"] / figures["elapsed"]
                cpu_rate = figures["responses"] / figures["cpu"]
                rates[variant].append(rate)
                cpu_rates[variant].append(cpu_rate)
                print(
                    f"round {round_number + 1} {variant:<10} {figures['responses']} responses "
                    f"in {figures['elapsed']:.2f}s = {rate:.1f} pages/s ({cpu_rate:.1f} pages per CPU second)"
                )
    finally:
        site.stop()
    ours, theirs = statistics.median(rates["resilience"]), statistics.median(rates["scrapy"])
    print(f"median pages/s: scrapy-resilience {ours:.1f}, Scrapy's RetryMiddleware {theirs:.1f}")
    print(f"throughput ratio (ours / Scrapy's): {ours / theirs:.3f}  (goal >= 0.97)")
    ours_cpu, theirs_cpu = statistics.median(cpu_rates["resilience"]), statistics.median(cpu_rates["scrapy"])
    print(f"median pages per CPU second: scrapy-resilience {ours_cpu:.1f}, Scrapy's {theirs_cpu:.1f}")
    print(f"CPU throughput ratio (ours / Scrapy's): {ours_cpu / theirs_cpu:.3f}  (goal >= 0.97)")


if __name__ == "__main__":
    main()
