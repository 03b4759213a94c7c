"""The demonstration behind `make demo`: one misbehaving site, two crawls, one report.

It starts the demo site, schedules an outage and a rate limit on it, and runs
the example project's `catalogue` spider twice through the same trouble,
SIGKILLing each crawl once midway:

1. with scrapy-resilience (the project as shipped, checkpoints on), under the
   supervisor `scrapy resilience crawl`, which resumes it from its checkpoint;
2. with plain Scrapy (add-on off, so Scrapy's own RetryMiddleware) and a
   JOBDIR, run again by hand after the kill.

Progress is printed while each crawl runs, as the site sees it; the report at
the end compares pages expected and obtained, retries, time spent waiting and
checkpoints written and crashes survived.

    python example_project/demo.py [--products 300] [--outage 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import psutil
from demosite_client import DemoSite

PROJECT = Path(__file__).resolve().parent
REPO = PROJECT.parent


@attrs.frozen(kw_only=True)
class Trouble:
    """What the site does wrong during each crawl, relative to the crawl's start."""

    outage_at: float = 1.5  # seconds after the start
    outage: float = 8.0  # seconds of 503s on every page
    rate_per_second: int = 50  # per host; 429 with Retry-After beyond it
    retry_after: int = 1
    page_delay: float = 0.15  # every page takes this long, so the crawl lasts long enough to meet the outage

    def apply(self, site: DemoSite) -> None:
        site.reset()
        site.set_faults(
            outage={"start": time.time() + self.outage_at, "duration": self.outage, "mode": "503"},
            rate_limit={"max_per_second": self.rate_per_second, "retry_after": self.retry_after},
            slow={"fraction": 1.0, "delay": self.page_delay},
        )


@attrs.define(kw_only=True)
class CrawlResult:
    """What one crawl obtained, from its feed, its stats and the site's log."""

    label: str
    expected: int
    items: int
    elapsed: float
    stats: dict[str, Any]
    statuses: Counter[int]
    checkpoints: int
    crashes_survived: int = 0  # filled by supervised scenarios

    @property
    def lost(self) -> int:
        return self.expected - self.items


def run_crawl(
    label: str,
    site: DemoSite,
    workdir: Path,
    settings: dict[str, Any],
    trouble: Trouble,
    command: tuple[str, ...] = ("crawl", "catalogue"),
    killer: Killer | None = None,
    rerun_after_kill: bool = False,
    timeout: float = 600,
) -> CrawlResult:
    """Run one crawl of the example project against the site, showing progress; collect its figures.

    With a ``killer`` the crawl is SIGKILLed once midway; ``rerun_after_kill``
    then starts the same command again, as a user without a supervisor would.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    feed, stats_file = workdir / "items.jsonl", workdir / "stats.json"
    settings = {"FEEDS": {str(feed): {"format": "jsonlines"}}, "STATS_DUMP_FILE": str(stats_file), **settings}
    argv = [sys.executable, "-m", "scrapy", *command, "-a", f"site={site.url}"]
    for name, value in settings.items():
        argv += ["-s", f"{name}={json.dumps(value) if isinstance(value, dict) else value}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    trouble.apply(site)
    expected = site.info()["live"]
    started = time.monotonic()
    entries: list[dict[str, Any]] = []
    with (workdir / "crawl.log").open("w") as log:
        child = subprocess.Popen(argv, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        while child.poll() is None or (rerun_after_kill and killer and killer.killed and not killer.rerun):
            if child.poll() is not None:
                assert killer is not None
                print(f"  {label}: running the same command again, as a user would", flush=True)
                killer.rerun = True
                child = subprocess.Popen(argv, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            if time.monotonic() - started > timeout:
                child.kill()
            entries += site.log(since=len(entries))
            show_progress(label, time.monotonic() - started, entries, expected)
            if killer:
                killer(label, child, entries, expected)
            time.sleep(0.5)  # a display refresh, not a wait for an event
        entries += site.log(since=len(entries))
    elapsed = time.monotonic() - started
    show_progress(label, elapsed, entries, expected, final=True)
    if child.returncode:
        # A crawl that could not even run (a typo in a setting, say) explains itself here.
        tail = (workdir / "crawl.log").read_text(errors="replace").splitlines()[-15:]
        print(f"  {label}: scrapy exited with {child.returncode}:", *tail, sep="\n    ", flush=True)
    items = {json.loads(line)["sku"] for line in feed.read_text().splitlines()} if feed.exists() else set()
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    checkpoint_dir = settings.get("RESILIENCE_CHECKPOINT_DIR")
    return CrawlResult(
        label=label,
        expected=expected,
        items=len(items),
        elapsed=elapsed,
        stats=stats,
        statuses=Counter(entry["status"] for entry in entries),
        checkpoints=int(stats.get("resilience/checkpoint/count", 0)) if checkpoint_dir else 0,
        crashes_survived=int(bool(killer and killer.killed)) if child.returncode == 0 else 0,
    )


def show_progress(
    label: str, elapsed: float, entries: list[dict[str, Any]], expected: int, final: bool = False
) -> None:
    """One line, rewritten in place on a terminal: what the site has served so far."""
    statuses = Counter(entry["status"] for entry in entries)
    products = served_products(entries)
    line = (
        f"  {label:<24} {elapsed:6.1f}s  products {products:>5}/{expected:<5}  "
        f"503 {statuses[503]:>4}  429 {statuses[429]:>4}  404 {statuses[404]:>4}"
    )
    if sys.stdout.isatty():
        print("\r" + line, end="\n" if final else "", flush=True)
    elif final or int(elapsed * 2) % 10 == 0:
        print(line, flush=True)


@attrs.define
class Killer:
    """SIGKILLs the crawl once, when the site has served ``fraction`` of the products: a machine lost midway."""

    fraction: float = 0.12  # early enough that plain Scrapy, which gives up in the outage, is still running
    supervised: bool = False  # the crawl is the supervisor's child, not the process we started
    killed: bool = False
    rerun: bool = False

    def __call__(
        self, label: str, child: subprocess.Popen[str], entries: list[dict[str, Any]], expected: int
    ) -> None:
        if self.killed or served_products(entries) < self.fraction * expected:
            return
        try:
            target = psutil.Process(child.pid).children()[0] if self.supervised else psutil.Process(child.pid)
        except (IndexError, psutil.NoSuchProcess):
            return  # between two runs of the supervisor: try again at the next look
        target.send_signal(signal.SIGKILL)
        self.killed = True
        print(f"  {label}: SIGKILL sent to the crawl (pid {target.pid})", flush=True)


def served_products(entries: list[dict[str, Any]]) -> int:
    return len({e["path"] for e in entries if e["status"] == 200 and e["path"].startswith("/product/")})


def scenario_outage_rate_limit_and_kill(site: DemoSite, workdir: Path, trouble: Trouble) -> list[CrawlResult]:
    """The same crawl through the same outage, rate limit and SIGKILL, with the add-on and without it.

    With the add-on the crawl runs under ``scrapy resilience crawl``, which
    restarts it from its checkpoint; plain Scrapy keeps its queue in a JOBDIR
    and is started again by hand, which is all it offers.
    """
    resilient = run_crawl(
        "with scrapy-resilience",
        site,
        workdir / "resilient",
        {
            "RESILIENCE_CHECKPOINT_DIR": str(workdir / "resilient" / "job"),
            "RESILIENCE_CHECKPOINT_INTERVAL": 2,
        },
        trouble,
        command=("resilience", "crawl", "catalogue"),
        killer=Killer(supervised=True),
    )
    plain = run_crawl(
        "plain Scrapy (JOBDIR)",
        site,
        workdir / "plain",
        {"ADDONS": {}, "JOBDIR": str(workdir / "plain" / "jobdir")},
        trouble,
        killer=Killer(),
        rerun_after_kill=True,
    )
    return [resilient, plain]


def report(results: list[CrawlResult], trouble: Trouble) -> str:
    """The table a person reads in ten seconds."""
    rows = [
        ("pages expected", lambda r: r.expected),
        ("pages obtained", lambda r: r.items),
        ("pages lost", lambda r: r.lost),
        ("retries", lambda r: r.stats.get("retry/count", 0)),
        ("retries given up", lambda r: r.stats.get("retry/max_reached", 0)),
        ("time waiting (s)", lambda r: round(float(r.stats.get("resilience/retry/delay_seconds", 0)), 1)),
        ("checkpoints written", lambda r: r.checkpoints),
        ("crashes survived", lambda r: r.crashes_survived),
        ("503 / 429 served", lambda r: f"{r.statuses[503]} / {r.statuses[429]}"),
        ("elapsed (s)", lambda r: round(r.elapsed, 1)),
    ]
    width = max(len(r.label) for r in results) + 2
    lines = [
        f"The site had a {trouble.outage:g}s outage (503) {trouble.outage_at:g}s into each crawl and allowed "
        f"{trouble.rate_per_second} requests/s per host (429, Retry-After {trouble.retry_after}s); "
        "each crawl was SIGKILLed once while it ran.",
        "",
        " " * 22 + "".join(r.label.rjust(width) for r in results),
    ]
    lines += [name.ljust(22) + "".join(str(value(r)).rjust(width) for r in results) for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The scrapy-resilience demonstration.")
    parser.add_argument("--products", type=int, default=300, help="size of the demo shop (default 300)")
    parser.add_argument("--outage", type=float, default=8.0, help="seconds of outage in each crawl")
    parser.add_argument("--rate", type=int, default=50, help="requests per second per host before 429s")
    parser.add_argument("--keep", type=Path, help="keep logs, feeds and checkpoints in this directory")
    args = parser.parse_args(argv)
    trouble = Trouble(outage=args.outage, rate_per_second=args.rate)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="resilience-demo-"))
    print(f"Starting the demo site ({args.products} products) ...", flush=True)
    with DemoSite.start("--products", str(args.products)) as site:
        print(f"Site at {site.url}; crawls, logs and checkpoints in {workdir}", flush=True)
        results = scenario_outage_rate_limit_and_kill(site, workdir, trouble)
    print()
    print(report(results, trouble))
    return 0 if results[0].lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
