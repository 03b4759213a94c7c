"""A dead site and a short outage: plain Scrapy against the add-on, same site, same run.

Three scenarios on the demo site (each crawl in a fresh child process):

* ``dead-refused``: 300 product pages, 0.3 s per page; 3 s into the crawl the
  site refuses every new connection for good. Plain Scrapy runs with its
  defaults and ``CLOSESPIDER_ERRORCOUNT=20``; the add-on with its defaults,
  ``RESILIENCE_ABORT_FAILURE_RATE=50`` and a checkpoint directory. Printed:
  seconds from the death to the end of the crawl, requests the site received
  after its death, and pages obtained.
* ``dead-silent``: the same, but the site accepts connections and never
  answers (``DOWNLOAD_TIMEOUT=10`` for both).
* ``outage``: 300 product pages, 0.15 s per page; the site answers 503 to
  everything for 8 s from 1.5 s into the crawl (``make demo``'s outage).
  Printed: seconds from the outage's end to full speed (the first moment the
  site's arrival rate over one second is back to 80 % of its rate before the
  outage), requests the site received during the outage, pages lost.
* ``outage-3min``: the same with a 3-minute outage (how polite the probing is).

Both variants use their defaults otherwise.

    python benchmarks/bench_failures.py [--scenarios dead-refused,dead-silent,outage,outage-3min] [--limit 150]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from retry_bench_common import start_site

ITEMS = 300
ADDON = {"ADDONS": {"scrapy_resilience.Addon": 500}}
SCENARIOS: dict[str, dict[str, Any]] = {
    "dead-refused": {"mode": "refuse", "after": 3.0, "duration": 3600.0, "latency": 0.3, "settings": {}},
    "dead-silent": {
        "mode": "silent",
        "after": 3.0,
        "duration": 3600.0,
        "latency": 0.3,
        "settings": {"DOWNLOAD_TIMEOUT": 10},
    },
    "outage": {"mode": "503", "after": 1.5, "duration": 8.0, "latency": 0.15, "settings": {}},
    "outage-3min": {"mode": "503", "after": 1.5, "duration": 180.0, "latency": 0.15, "settings": {}},
}


def variant_settings(variant: str, scenario: str, jobdir: str) -> dict[str, Any]:
    extra = dict(SCENARIOS[scenario]["settings"])
    if variant == "scrapy":
        if scenario.startswith("dead"):
            extra["CLOSESPIDER_ERRORCOUNT"] = 20
        return extra
    extra.update(ADDON)
    if scenario.startswith("dead"):
        extra.update({"RESILIENCE_ABORT_FAILURE_RATE": 50, "RESILIENCE_CHECKPOINT_DIR": jobdir})
    return extra


def run(variant: str, scenario: str, site: Any, limit: float) -> dict[str, Any]:
    spec = SCENARIOS[scenario]
    site.reset()
    with tempfile.TemporaryDirectory() as jobdir:
        settings = variant_settings(variant, scenario, jobdir + "/job")
        argv = [sys.executable, __file__, "--child", site.url, json.dumps(settings)]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        # The clock starts with the child: its start-up is part of "3 s into the crawl" for both variants.
        started = time.time()
        death = started + spec["after"]
        site.set_faults(
            slow={"fraction": 1.0, "delay": spec["latency"]},
            outage={"start": death, "duration": spec["duration"], "mode": spec["mode"]},
        )
        try:
            waits = spec["after"] + limit + (0.0 if scenario.startswith("dead") else spec["duration"])
            out, _ = child.communicate(timeout=waits)
            ended = time.time()
            figures = json.loads(out.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            ended, figures = None, {"items": None, "finish_reason": "still running"}
    log = site.log()
    site.set_faults(outage=None)
    figures["after_death"] = sum(1 for entry in log if entry["t"] >= death)
    figures["during"] = sum(1 for entry in log if death <= entry["t"] < death + spec["duration"])
    figures["death_to_close"] = None if ended is None else ended - death
    figures["to_full_speed"] = to_full_speed(log, death, death + spec["duration"])
    return figures


def to_full_speed(log: list[dict[str, Any]], start: float, end: float) -> float | None:
    """Seconds from ``end`` until the arrival rate over one second is 80 % of the rate before ``start``."""
    arrivals = sorted(entry["t"] for entry in log)
    before = [t for t in arrivals if t < start]
    if len(before) < 2 or before[-1] <= before[0]:
        return None
    rate = (len(before) - 1) / (before[-1] - before[0])
    after = [t for t in arrivals if t >= end]
    for i, t in enumerate(after):
        within = sum(1 for u in after[i:] if u < t + 1.0)
        if within >= 0.8 * rate:
            return t - end
    return None


def seconds(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--limit", type=float, default=150.0, help="seconds after the death before a crawl is killed")
    args = parser.parse_args()
    site = start_site("--products", str(ITEMS), "--dead-links", "0")
    try:
        for scenario in args.scenarios.split(","):
            for variant in ("scrapy", "resilience"):
                f = run(variant, scenario, site, args.limit)
                items = "-" if f["items"] is None else f["items"]
                if scenario.startswith("dead"):
                    print(
                        f"{scenario:<13} {variant:<10} death to close {seconds(f['death_to_close'])} s  "
                        f"requests after death {f['after_death']:4d}  items {items}/{ITEMS}  "
                        f"({f['finish_reason']})",
                        flush=True,
                    )
                else:
                    print(
                        f"{scenario:<13} {variant:<10} outage end to full speed {seconds(f['to_full_speed'])} s  "
                        f"requests during the outage {f['during']:4d}  items {items}/{ITEMS} "
                        f"lost {ITEMS - (f['items'] or 0)}",
                        flush=True,
                    )
    finally:
        site.stop()


def child(site_url: str, settings: dict[str, Any]) -> None:
    from scrapy import Request, Spider
    from scrapy.crawler import CrawlerProcess
    from scrapy.http import Response

    class Products(Spider):
        name = "products"

        async def start(self) -> AsyncIterator[Request]:
            for number in range(1, ITEMS + 1):
                yield Request(f"{site_url}/product/{number}.html")

        def parse(self, response: Response) -> Any:
            yield {"sku": response.css("span.sku::text").get()}

    process = CrawlerProcess({"LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False, **settings})
    crawler = process.create_crawler(Products)
    process.crawl(crawler)
    process.start()
    assert crawler.stats is not None
    print(
        json.dumps(
            {
                "items": crawler.stats.get_value("item_scraped_count", 0),
                "finish_reason": crawler.stats.get_value("finish_reason"),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        # scrapy_resilience comes from PYTHONPATH (or the installed package), so that
        # PYTHONPATH=/path/to/another/checkout measures that one.
        child(sys.argv[2], json.loads(sys.argv[3]))
    else:
        main()
