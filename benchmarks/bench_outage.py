"""Pages lost to an outage: Scrapy's RetryMiddleware against ours, same crawl, same outage.

The demo site goes down (every page 503, or every connection reset) for
``--duration`` seconds, ``--after`` seconds into each crawl. Both variants use
their default retry settings; the crawl is slowed (2 requests at a time per
domain, a small download delay) so that the outage falls in its middle.

    python benchmarks/bench_outage.py [--duration 25] [--pages 20] [--modes 503,reset]
"""

from __future__ import annotations

import argparse
import time

from retry_bench_common import run_child, start_site

CRAWL = {"CONCURRENT_REQUESTS_PER_DOMAIN": 2, "DOWNLOAD_DELAY": 0.05}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=25.0)
    parser.add_argument("--after", type=float, default=3.0, help="seconds into the crawl the outage starts")
    parser.add_argument("--pages", type=int, default=20, help="list pages (20 products each)")
    parser.add_argument("--modes", default="503,reset")
    args = parser.parse_args()
    site = start_site("--products", str(args.pages * 20), "--dead-links", "0")
    expected = args.pages * 21  # list pages and their 20 products each
    try:
        for mode in args.modes.split(","):
            for variant in ("scrapy", "resilience"):
                site.reset()
                site.set_faults(outage={"start": time.time() + args.after, "duration": args.duration, "mode": mode})
                figures = run_child(variant, site.url, args.pages, CRAWL)
                fetched = figures["list_pages"] + figures["products"]
                print(
                    f"outage {mode:<5} {args.duration:.0f}s  {variant:<10} pages lost {expected - fetched:4d} "
                    f"of {expected}  (retries {figures['retry/count']}, given up {figures['retry/max_reached']}, "
                    f"crawl {figures['elapsed']:.1f}s)"
                )
    finally:
        site.stop()


if __name__ == "__main__":
    main()
