"""Shared by bench_retry.py and bench_outage.py: one catalogue crawl in a child process.

``run_child(variant, site_url, pages, extra)`` runs ``python retry_bench_common.py``
as a subprocess (a Twisted reactor cannot be restarted, so each crawl gets a
fresh process) and returns what the child printed as JSON: pages fetched,
products expected and scraped, elapsed and CPU seconds and a few stats.

Variants: ``"scrapy"`` (Scrapy's own RetryMiddleware, its defaults) and
``"resilience"`` (ours in its place, its defaults).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCRAPYS = "scrapy.downloadermiddlewares.retry.RetryMiddleware"
OURS = "scrapy_resilience.retry.RetryMiddleware"
VARIANTS = {
    "scrapy": {},
    "resilience": {"DOWNLOADER_MIDDLEWARES": {SCRAPYS: None, OURS: 550}},
}
STATS = ("retry/count", "retry/max_reached", "resilience/retry/gave_up", "resilience/retry/delay_seconds")


def start_site(*args: str) -> Any:
    """Start the demo site (example_project/demosite_client.py) and return its client."""
    sys.path.insert(0, str(REPO / "example_project"))
    from demosite_client import DemoSite

    return DemoSite.start(*args)


def run_child(variant: str, site_url: str, pages: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Crawl ``pages`` list pages and their products in a fresh process; return its figures."""
    argv = [sys.executable, __file__, variant, site_url, str(pages), json.dumps(extra or {})]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _child(variant: str, site_url: str, pages: int, extra: dict[str, Any]) -> None:
    from scrapy import Request, Spider
    from scrapy.crawler import CrawlerProcess
    from scrapy.http import Response

    class Catalogue(Spider):
        name = "bench"

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.list_pages = 0
            self.live: set[str] = set()
            self.products: set[str] = set()

        async def start(self) -> AsyncIterator[Request]:
            yield Request(site_url + "/catalogue/page-1.html", callback=self.parse_list)

        def parse_list(self, response: Response) -> Iterator[Request]:
            self.list_pages += 1
            for href in response.css("li.product a::attr(href)").getall():
                url = response.urljoin(href)
                if not url.endswith("-gone.html"):
                    self.live.add(url)
                yield Request(url, callback=self.parse_product)
            next_page = response.css("li.next a::attr(href)").get()
            if next_page and self.list_pages < pages:
                yield Request(response.urljoin(next_page), callback=self.parse_list)

        def parse_product(self, response: Response) -> None:
            self.products.add(response.url)

    # Imported before the clocks start, for both variants: a one-off import
    # cost is not throughput.
    import scrapy_resilience.retry  # noqa: F401

    settings = {"LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False, **VARIANTS[variant], **extra}
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(Catalogue)
    started, cpu_started = time.perf_counter(), time.process_time()
    process.crawl(crawler)
    process.start()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    spider: Any = crawler.spider
    assert crawler.stats is not None
    figures = {
        "variant": variant,
        "elapsed": elapsed,
        "cpu": cpu,
        "responses": crawler.stats.get_value("response_received_count", 0),
        "list_pages": spider.list_pages,
        "expected_products": len(spider.live),
        "products": len(spider.products & spider.live),
        **{key: crawler.stats.get_value(key, 0) for key in STATS},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
