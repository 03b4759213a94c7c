"""A browser crash: how long the requests on the killed Chromium take to be answered, with and without the add-on.

Each round crawls N product pages of the demo site through scrapy-playwright
(Debian's Chromium, 4 concurrent requests, Scrapy's default DOWNLOAD_TIMEOUT)
and SIGKILLs every Chromium process twice, at the 15th and the 35th response,
in a fresh process per mode:

- ``plain``: scrapy-playwright's own handler, no add-on (Scrapy's retry);
- ``addon``: the add-on (its handler, its retry middleware).

For each kill it prints the requests in flight at the kill and the seconds
from the kill until: they were failed (with the add-on, by
``BrowserDisconnectedError``), the first of them was sent again (a retry of
the add-on; scrapy-playwright's own retry of a page whose target closed
happens inside its handler, unseen by Scrapy), the crawl's next response
(its gap), and the last of them got its response (a retry goes behind the
pages not crawled yet: Scrapy lowers its priority); then the pages scraped
and the crawl's time. A crawl still running ``--cap`` seconds after the
second kill is stopped and reported as stalled, with the requests still
unanswered: scrapy-playwright applies no DOWNLOAD_TIMEOUT, and the add-on's
bound alone (180 s by default) would make the wait minutes.

    python benchmarks/bench_browser_crash.py [--rounds 1] [--pages 60] [--cap 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
KILL_AT = (15, 35)


def start_site(*args: str) -> Any:
    sys.path.insert(0, str(REPO / "example_project"))
    from demosite_client import DemoSite

    return DemoSite.start(*args)


def child(mode: str, site: str, pages: int, cap: float) -> None:
    """One crawl; prints a JSON line of figures."""
    from scrapy.utils.reactor import install_reactor

    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    import psutil
    import scrapy
    from scrapy import signals
    from scrapy.crawler import CrawlerRunner
    from twisted.internet import reactor

    sys.path.insert(0, str(REPO / "tests"))
    from chromium import LAUNCH_OPTIONS

    from scrapy_resilience.browser import bridge

    class Products(scrapy.Spider):
        name = "products"

        async def start(self):
            for number in range(1, pages + 1):
                yield scrapy.Request(f"{site}/product/{number}.html", meta={"playwright": True})

        def parse(self, response):
            yield {"sku": response.css("span.sku::text").get()}

    handler = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
    settings: dict[str, Any] = {
        "DOWNLOAD_HANDLERS": {"http": handler, "https": handler},
        "PLAYWRIGHT_LAUNCH_OPTIONS": LAUNCH_OPTIONS,
        "CONCURRENT_REQUESTS": 4,
        "LOG_LEVEL": "ERROR",
        "TELNETCONSOLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
    }
    if mode == "addon":
        settings["ADDONS"] = {"scrapy_resilience.Addon": 500}
    runner = CrawlerRunner(settings)
    crawler = runner.create_crawler(Products)
    started = time.monotonic()
    flying: dict[str, int] = {}  # url -> requests of it in the downloader
    kills: list[dict[str, Any]] = []
    responses = 0
    items = set()

    def kill() -> None:
        # Every Chromium process of the crawl, as the OOM killer would; no waiting on the reactor.
        for found in bridge.playwright_handlers(crawler):
            for process in bridge.browser_processes(found):
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
        kills.append({"at": time.monotonic(), "on_it": {url for url, n in flying.items() if n}, "answered": {},
                      "resent": None, "gap": None, "failed": None})  # fmt: skip
        if len(kills) == len(KILL_AT):
            reactor.callLater(cap, stop)

    def reached(request: Any) -> None:
        flying[request.url] = flying.get(request.url, 0) + 1
        for done in kills:
            if done["resent"] is None and request.url in done["on_it"] and request.meta.get("retry_times"):
                done["resent"] = time.monotonic() - done["at"]

    def left(request: Any) -> None:
        flying[request.url] -= 1

    def received(response: Any, request: Any) -> None:
        nonlocal responses
        responses += 1
        for done in kills:
            if done["gap"] is None:
                done["gap"] = time.monotonic() - done["at"]
            if request.url in done["on_it"] and request.url not in done["answered"]:
                done["answered"][request.url] = time.monotonic() - done["at"]
        if responses in KILL_AT:
            reactor.callLater(0, kill)

    def recorded(event: Any) -> None:
        if kills and kills[-1]["failed"] is None and event.message.startswith("Browser closed under"):
            kills[-1]["failed"] = time.monotonic() - kills[-1]["at"]

    def stop() -> None:
        if crawler.engine is not None and crawler.engine.running:
            crawler.stats.set_value("stalled", True)
            reactor.stop()  # the crawl would wait for the stuck requests: cut it

    crawler.signals.connect(reached, signal=signals.request_reached_downloader)
    crawler.signals.connect(left, signal=signals.request_left_downloader)
    crawler.signals.connect(received, signal=signals.response_received)
    if mode == "addon":
        from scrapy_resilience.signals import failure_recorded

        crawler.signals.connect(recorded, signal=failure_recorded)
    crawler.signals.connect(lambda item: items.add(item["sku"]), signal=signals.item_scraped, weak=False)
    runner.crawl(crawler).addBoth(lambda _: reactor.stop() if reactor.running else None)
    reactor.run()
    result = {
        "mode": mode,
        "items": len(items),
        "seconds": round(time.monotonic() - started, 1),
        "stalled": bool(crawler.stats.get_value("stalled")),
        "kills": [
            {
                "on_it": len(done["on_it"]),
                "unanswered": len(done["on_it"] - set(done["answered"])),
                "failed_s": round(done["failed"], 2) if done["failed"] is not None else None,
                "resent_s": round(done["resent"], 2) if done["resent"] is not None else None,
                "gap_s": round(done["gap"], 2) if done["gap"] is not None else None,
                "last_answer_s": round(max(done["answered"].values()), 2) if done["answered"] else None,
            }
            for done in kills
        ],
        "failed_at_disconnect": crawler.stats.get_value("resilience/browser/requests_failed", 0),
    }
    print(json.dumps(result), flush=True)
    os._exit(0)  # a stalled crawl leaves Playwright tasks behind: do not wait for them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--cap", type=float, default=60.0, help="seconds after the second kill before a crawl is cut")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SITE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.pages, args.cap)
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with start_site("--products", str(args.pages), "--dead-links", "0") as site:
        print(f"{args.pages} pages, 4 concurrent, Chromium SIGKILLed at responses {KILL_AT}, default DOWNLOAD_TIMEOUT")
        print(f"{'mode':6} {'items':>5} {'seconds':>8} {'stalled':>8}  "
              "per kill: on it / unanswered / failed s / retry sent s / next response s / last answer s")
        for _ in range(args.rounds):
            for mode in ("plain", "addon"):
                command = [sys.executable, __file__, "--pages", str(args.pages), "--cap", str(args.cap),
                           "--child", mode, site.url]  # fmt: skip
                out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.cap + 600)
                lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
                if not lines:
                    print(mode, "failed:", out.stderr[-2000:])
                    continue
                r = json.loads(lines[-1])
                per_kill = "  ".join(
                    f"{k['on_it']} / {k['unanswered']} / {k['failed_s']} / {k['resent_s']} / {k['gap_s']}"
                    f" / {k['last_answer_s']}"
                    for k in r["kills"]
                )
                print(f"{r['mode']:6} {r['items']:>5} {r['seconds']:>8} {r['stalled']!s:>8}  {per_kill}"
                      f"  (failed at the disconnect: {r['failed_at_disconnect']})")  # fmt: skip


if __name__ == "__main__":
    main()
