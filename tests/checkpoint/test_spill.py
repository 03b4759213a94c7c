"""A big frontier waits in the scheduler as JSON text: crawled the same, in the same order, as objects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from scrapy import Request, Spider
from scrapy.http import Response
from scrapy.squeues import FifoMemoryQueue, LifoMemoryQueue
from scrapy.utils.test import get_crawler
from twisted.python.failure import Failure

from scrapy_resilience import stats
from scrapy_resilience.checkpoint import codec, spill
from scrapy_resilience.jobdir.journal import segment_numbers, segment_path

SETTINGS = {
    "ADDONS": {"scrapy_resilience.Addon": 500},
    "RESILIENCE_MONITOR_ENABLED": False,
    "TELNETCONSOLE_ENABLED": False,
    "CONCURRENT_REQUESTS": 1,  # one request at a time: the order of the crawl is the scheduler's
}


class Unencodable:
    """A meta value the codec refuses: its request must be kept as an object."""


class FrontierSpider(Spider):
    """One list page yields its 20 products with callbacks, errbacks, cb_kwargs, tagged meta and priorities."""

    name = "frontier"

    def __init__(self, site: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site
        self.visits: list[tuple[str, Any, Any]] = []

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.site + "/catalogue/page-1.html")

    def parse(self, response: Response) -> Iterator[Request]:
        for n, href in enumerate(response.css("li.product a::attr(href)").getall()):
            meta: dict[str, Any] = {"pair": ("n", n)}  # a tuple comes back as a tuple, not a list
            if n == 7:
                meta["object"] = Unencodable()
            yield response.follow(href, callback=self.parse_product, errback=self.failed, cb_kwargs={"n": n},
                                  meta=meta, priority=n % 3)

    def parse_product(self, response: Response, n: int) -> None:
        self.visits.append((response.url, n, response.meta["pair"]))

    def failed(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        self.visits.append((request.url, request.cb_kwargs["n"], request.meta["pair"]))


async def crawl(site: str, job: Path) -> Any:
    crawler = get_crawler(FrontierSpider, {**SETTINGS, "RESILIENCE_CHECKPOINT_DIR": str(job)})
    await crawler.crawl(site=site)
    return crawler


def queue(queue_class: type, crawler: Any) -> Any:
    return spill.spilling_queue(queue_class).from_crawler(crawler)


@pytest.mark.parametrize("queue_class", [LifoMemoryQueue, FifoMemoryQueue], ids=["lifo", "fifo"])
def test_a_queue_keeps_its_order_and_its_requests(queue_class: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past IN_MEMORY requests wait as text and come back equal, in the order of the queue they wrap."""
    monkeypatch.setattr(spill, "IN_MEMORY", 3)
    crawler = get_crawler(FrontierSpider, SETTINGS)
    crawler.spider = spider = FrontierSpider(site="http://127.0.0.1")
    requests = [Request(f"http://127.0.0.1/{n}", callback=spider.parse_product, errback=spider.failed,
                        cb_kwargs={"n": n}, meta={"pair": ("n", n)}, priority=n) for n in range(8)]
    requests[5].meta["object"] = Unencodable()
    spilled, plain = queue(queue_class, crawler), queue_class.from_crawler(crawler)
    for request in requests:
        spilled.push(request)
        plain.push(request)
    assert len(spilled) == 8
    assert spilled.peek().url == plain.peek().url
    popped, expected = [spilled.pop() for _ in range(8)], [plain.pop() for _ in range(8)]
    assert spilled.pop() is None
    assert [request.to_dict(spider=spider) for request in popped] == [request.to_dict(spider=spider)
                                                                       for request in expected]
    # The first three and the unencodable one stayed objects; the others are rebuilt from their text.
    assert [n for n, request in enumerate(requests) if any(request is p for p in popped)] == [0, 1, 2, 5]
    assert all(type(request.meta["pair"]) is tuple for request in popped)


@pytest_twisted.ensureDeferred
async def test_a_crawl_with_a_spilled_frontier_crawls_the_same_requests(
        demo_site: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request waiting as text comes back whole: callbacks, errbacks, cb_kwargs, tagged meta, priority."""
    as_objects = await crawl(demo_site.url, tmp_path / "objects")
    decoded: list[str] = []
    loads = codec.loads

    def counting_loads(text: str | bytes, spider: Spider | None) -> Request:
        decoded.append(str(text))
        return loads(text, spider)

    monkeypatch.setattr(spill, "IN_MEMORY", 0)
    monkeypatch.setattr(codec, "loads", counting_loads)
    as_text = await crawl(demo_site.url, tmp_path / "text")

    assert len(as_objects.spider.visits) == 20  # every product, the dead links through the errback
    assert sorted(as_text.spider.visits) == sorted(as_objects.spider.visits)
    assert all(type(pair) is tuple for _, _, pair in as_text.spider.visits)
    assert len(decoded) == 20  # the list page and the products, but for the unencodable one
    assert as_text.stats.get_value(stats.CHECKPOINT_UNSERIALIZABLE) == 1
    assert as_text.stats.get_value("finish_reason") == "finished"


@pytest_twisted.ensureDeferred
async def test_a_spilled_request_is_journaled_once(demo_site: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The text a queue keeps is the ledger's own encoding: one "a" line per request, as without spilling."""
    monkeypatch.setattr(spill, "IN_MEMORY", 0)
    crawler = await crawl(demo_site.url, tmp_path / "job")
    journal = tmp_path / "job" / "journal"
    lines = [line for number in segment_numbers(journal)
             for line in segment_path(journal, number).read_text().splitlines()]
    pending = [line for line in lines if line.startswith('{"a":')]
    assert len(pending) == len({line.split('"', 4)[3] for line in pending}) == 20  # the list page and 19 products
    assert crawler.stats.get_value("scheduler/enqueued") == 21
