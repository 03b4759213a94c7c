"""What a SIGKILL costs with Scrapy's JOBDIR, and with our checkpoints, in the same scenario.

example_project's catalogue crawl of a local demo site, killed (SIGKILL) at
seeded random instants (after a random number of new items), started again
each time with the same directory, then run to its end. Items are counted in
a FEEDS JSON lines file, as users read them. Prints, for each variant, the
items the uninterrupted crawl has and the killed-and-resumed one lacks, the
duplicates, the pages fetched more than once (the site's request log), and
how the last run ended.

    python benchmarks/bench_jobdir_kill.py [--kills 3] [--products 3000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {
    # Scrapy alone: the add-on off, its job directory on.
    "Scrapy JOBDIR": lambda job: {"ADDONS": "{}", "JOBDIR": job},
    "scrapy-resilience": lambda job: {"RESILIENCE_CHECKPOINT_DIR": job, "RESILIENCE_CHECKPOINT_INTERVAL": "5"},
}


def start_site(*args: str) -> Any:
    sys.path.insert(0, str(REPO / "example_project"))
    from demosite_client import DemoSite

    return DemoSite.start(*args)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def skus(path: Path) -> list[str]:
    found = []
    for line in lines(path):
        try:
            found.append(json.loads(line)["sku"])
        except ValueError:
            continue  # a line torn by the kill: lost, as for any reader
    return found


def crawl(site_url: str, settings: dict[str, str], feed: Path, log: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "scrapy", "crawl", "catalogue", "-s", "LOG_LEVEL=INFO",
            "-s", "FEEDS=" + json.dumps({str(feed): {"format": "jsonlines"}})]
    for name, value in settings.items():
        argv += ["-s", f"{name}={value}"]
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=REPO / "example_project", stdout=out, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO), "DEMO_SITE_URL": site_url})


def scenario(site_url: str, variant: str, kills: int, seed: int, tmp: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    feed, job = tmp / f"{variant}.jsonl", str(tmp / f"{variant}-job")
    settings = VARIANTS[variant](job)
    for kill in range(kills):
        target = len(lines(feed)) + rng.randint(150, 600)
        process = crawl(site_url, settings, feed, tmp / f"{variant}-{kill}.log")
        deadline = time.monotonic() + 300
        while len(lines(feed)) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    log = tmp / f"{variant}-final.log"
    crawl(site_url, settings, feed, log).wait(timeout=600)
    ended = re.findall(r"Spider closed \((\w+)\)", log.read_text())
    scraped = re.findall(r"'item_scraped_count': (\d+)", log.read_text())
    return {"skus": skus(feed), "ended": ended[-1] if ended else "?", "last_run_items": int(scraped[-1]) if scraped
            else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    site = start_site("--products", str(args.products))
    try:
        info = site.info()
        expected = {str(n) for n in range(1, info["products"] + 1)} - {str(n) for n in info["dead"]}
        with tempfile.TemporaryDirectory() as tmp:
            for variant in VARIANTS:
                logged = len(site.log())
                outcome = scenario(site.url, variant, args.kills, args.seed, Path(tmp))
                fetched = Counter(entry["path"] for entry in site.log(logged))
                again = sum(count - 1 for count in fetched.values())
                found = Counter(outcome["skus"])
                missing = expected - set(found)
                duplicates = sum(count - 1 for count in found.values())
                print(f"{variant:<18} killed {args.kills} times, then run to its end: "
                      f"{len(expected) - len(missing):,} of {len(expected):,} items "
                      f"({len(missing):,} lost, {100 * len(missing) / len(expected):.1f}%), {duplicates:,} duplicates, "
                      f"{again:,} pages fetched more than once; "
                      f"the last run scraped {outcome['last_run_items']:,} items and ended '{outcome['ended']}'")
    finally:
        site.stop()


if __name__ == "__main__":
    main()
