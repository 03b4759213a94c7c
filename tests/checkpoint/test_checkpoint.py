"""The checkpoint extension in-process: what a checkpoint holds, its API, and what resume restores."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from pydispatch import dispatcher
from scrapy import Request, Spider
from scrapy import signals as scrapy_signals
from scrapy.core.scheduler import Scheduler as ScrapyScheduler
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.http import Response
from scrapy.utils.asyncio import call_later
from scrapy.utils.test import get_crawler

from scrapy_resilience import signals as resilience_signals
from scrapy_resilience import stats
from scrapy_resilience.checkpoint.extension import CheckpointExtension
from scrapy_resilience.checkpoint.refill import BATCH
from scrapy_resilience.checkpoint.scheduler import JournaledScheduler
from scrapy_resilience.jobdir.resume import requests_settled
from scrapy_resilience.jobdir.store import CheckpointStore
from scrapy_resilience.meta import ID_KEY
from scrapy_resilience.model.entities import Checkpoint, CheckpointStatus

BASE = {
    "ADDONS": {"scrapy_resilience.Addon": 500},
    "RESILIENCE_MONITOR_ENABLED": False,
    "TELNETCONSOLE_ENABLED": False,
    "LOG_LEVEL": "INFO",
    "CONCURRENT_REQUESTS": 4,
}


class PagesSpider(Spider):
    """Catalogue list pages 1..pages and their products; counts parsed pages in spider.state."""

    name = "pages"

    def __init__(self, site: str, pages: int = 3, copy_meta: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site, self.pages, self.copy_meta = site, pages, copy_meta

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.site + "/catalogue/page-1.html", callback=self.parse)

    def parse(self, response: Response) -> Iterator[Request]:
        self.state["pages"] = self.state.get("pages", 0) + 1
        meta = response.meta if self.copy_meta else None
        for href in response.css("li.product a::attr(href)").getall()[:5]:
            yield response.follow(href, callback=self.parse_product, meta=meta)
        page = int(response.url.rsplit("-", 1)[1].split(".")[0])
        if page < self.pages:
            yield response.follow(f"page-{page + 1}.html", callback=self.parse, meta=meta)

    def parse_product(self, response: Response) -> Iterator[dict[str, Any]]:
        self.state["pages"] = self.state.get("pages", 0) + 1
        yield {"sku": response.css("span.sku::text").get()}


async def crawl(spidercls: type[Spider], settings: dict[str, Any], **kwargs: Any) -> Any:
    crawler = get_crawler(spidercls, {**BASE, **settings})
    crawler.saved = []
    crawler.signals.connect(lambda checkpoint: crawler.saved.append(checkpoint),
                            signal=resilience_signals.checkpoint_saved, weak=False)
    await crawler.crawl(**kwargs)
    return crawler


def latest(job: Path) -> Checkpoint:
    loaded = CheckpointStore(job, job_id="x").load_latest()
    assert loaded is not None
    return loaded.checkpoint


def test_not_configured_without_directory() -> None:
    """Without RESILIENCE_CHECKPOINT_DIR the extension is off."""
    with pytest.raises(NotConfigured):
        CheckpointExtension.from_crawler(get_crawler(Spider, BASE))


@pytest_twisted.ensureDeferred
async def test_final_checkpoint_holds_the_job(demo_site: Any, tmp_path: Path) -> None:
    """A finished crawl's last checkpoint is a clean close with its counters, progress and private files."""
    job = tmp_path / "job"
    crawler = await crawl(PagesSpider, {"RESILIENCE_CHECKPOINT_DIR": str(job)}, site=demo_site.url)
    checkpoint = latest(job)
    state = checkpoint.data.job_state
    assert checkpoint.status is CheckpointStatus.COMPLETED
    assert (state["clean_close"], state["close_reason"], state["runs"], state["crashes"]) == (True, "finished", 1, 0)
    assert state["spider_state"] == crawler.spider.state and crawler.spider.state["pages"] > 3
    assert checkpoint.metadata.completed_items == state["requests_done"] == requests_settled(job)[0] == 18
    assert checkpoint.data.progress.completion_percentage == 100.0
    assert crawler.saved[-1] == checkpoint
    assert crawler.stats.get_value(stats.CHECKPOINT_LAST_SEQUENCE) == checkpoint.sequence_number
    assert crawler.stats.get_value(stats.CHECKPOINT_COUNT) == len(crawler.saved)
    assert all(path.stat().st_size < 1 << 20 for path in job.glob("checkpoints/checkpoint-*.json"))
    for path in [*job.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


@pytest_twisted.ensureDeferred
async def test_spider_state_and_stats_restored(demo_site: Any, tmp_path: Path) -> None:
    """Closed by a threshold then resumed: spider.state and the stats counters carry on from the first run."""
    settings = {"RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job")}
    first = await crawl(PagesSpider, {**settings, "CLOSESPIDER_PAGECOUNT": 6}, site=demo_site.url, pages=6)
    assert first.stats.get_value("finish_reason") == "closespider_pagecount"
    second = await crawl(PagesSpider, settings, site=demo_site.url, pages=6)
    assert second.stats.get_value("finish_reason") == "finished"
    responses = second.stats.get_value("response_received_count")
    assert responses == 6 + 30  # both runs together, each page once
    ignored = second.stats.get_value("httperror/response_ignored_count", 0)  # dead product links (404)
    assert second.spider.state["pages"] == responses - ignored
    assert second.stats.get_value("item_scraped_count") == 30 - ignored
    assert second.stats.get_value(stats.RESUME_COUNT) == 1
    assert second.stats.get_value(stats.RESUME_REQUESTS_RESTORED) > 0


class ManySpider(Spider):
    """1,500 product pages from one list page; records the URLs it got and the longest the scheduler grew."""

    name = "many"
    fetched: list[str]
    longest_queue = 0

    def __init__(self, site: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site, self.fetched = site, []

    async def start(self) -> AsyncIterator[Request]:
        self.crawler.signals.connect(self.on_scheduled, signal=scrapy_signals.request_scheduled)
        yield Request(f"{self.site}/catalogue/page-1.html", callback=self.parse_list)

    def parse_list(self, response: Response) -> Iterator[Request]:
        # From a callback, not from start(): Scrapy's scheduler serves start requests last.
        for i in range(1500):
            yield Request(f"{self.site}/product/{i}.html", callback=self.parse_product)

    def on_scheduled(self) -> None:
        self.longest_queue = max(self.longest_queue, len(self.crawler.engine.scheduler))

    def parse_product(self, response: Response) -> None:
        self.fetched.append(response.url)
        if len(self.fetched) == 20 and not self.crawler.stats.get_value(stats.RESUME_COUNT):
            raise CloseSpider("enough")  # stops the first run with nearly all of the 1,500 pending


@pytest_twisted.ensureDeferred
async def test_big_frontier_refills_the_scheduler_as_it_drains(demo_site: Any, tmp_path: Path) -> None:
    """Thousands of restored requests wait in the refill queue, not in the scheduler; each is fetched once."""
    settings = {"RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job"), "HTTPERROR_ALLOW_ALL": True,
                "CONCURRENT_REQUESTS": 16, "CONCURRENT_REQUESTS_PER_DOMAIN": 16}
    first = await crawl(ManySpider, settings, site=demo_site.url)
    assert first.stats.get_value("finish_reason") == "enough"
    assert first.spider.longest_queue > 1400  # the first run held nearly all of them
    second = await crawl(ManySpider, settings, site=demo_site.url)
    assert second.stats.get_value("finish_reason") == "finished"
    assert second.stats.get_value(stats.RESUME_REQUESTS_RESTORED) >= 1500 - len(first.spider.fetched)
    refill = second.get_extension(CheckpointExtension).refill
    assert len(refill) == 0
    assert second.spider.longest_queue <= refill.low_water + BATCH
    fetched = first.spider.fetched + second.spider.fetched
    assert sorted(fetched) == sorted(f"{demo_site.url}/product/{i}.html" for i in range(1500))


class FreshSpider(ManySpider):
    """ManySpider whose resumed run finds one new page per page it fetches, for its first 300 pages."""

    name = "fresh"
    fresh = 0

    async def start(self) -> AsyncIterator[Request]:
        refill = self.crawler.get_extension(CheckpointExtension).refill
        if refill is not None:
            refill.low_water = 10  # so that a few new pages fill the scheduler
        async for request in super().start():
            yield request

    def parse_product(self, response: Response) -> Iterator[Request]:  # type: ignore[override]
        super().parse_product(response)
        if self.crawler.stats.get_value(stats.RESUME_COUNT) and self.fresh < 300:
            self.fresh += 1
            yield Request(f"{self.site}/product/{self.fresh}.html?fresh=1", callback=self.parse_product)


@pytest_twisted.ensureDeferred
async def test_restored_requests_are_not_starved_by_new_ones(demo_site: Any, tmp_path: Path) -> None:
    """The scheduler kept full by new pages still gets a restored request for each one that leaves it."""
    settings = {"RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job"), "HTTPERROR_ALLOW_ALL": True,
                "CONCURRENT_REQUESTS": 16, "CONCURRENT_REQUESTS_PER_DOMAIN": 16}
    await crawl(FreshSpider, settings, site=demo_site.url)
    second = await crawl(FreshSpider, settings, site=demo_site.url)
    assert second.stats.get_value("finish_reason") == "finished"
    first_300 = second.spider.fetched[:300]
    restored = [url for url in first_300 if "fresh" not in url]
    # About 100 with one restored request owed per dequeue; about 30 (the first fill) without.
    assert len(restored) >= 60, f"only {len(restored)} restored pages among the first 300 fetched"


class StartSpider(Spider):
    """3,000 product pages from start(); notes how far start() had got when the event loop first ran."""

    name = "start"
    loop_ran_at: int | None = None

    def __init__(self, site: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site, self.fetched, self.yielded = site, 0, 0

    async def start(self) -> AsyncIterator[Request]:
        call_later(0, self.loop_ran)
        for i in range(3000):
            self.yielded = i
            yield Request(f"{self.site}/product/{i}.html?start=1", callback=self.parse_product)

    def loop_ran(self) -> None:
        self.loop_ran_at = self.yielded

    def parse_product(self, response: Response) -> None:
        self.fetched += 1
        if self.fetched == 10:
            raise CloseSpider("enough")


@pytest_twisted.ensureDeferred
async def test_skipping_handled_start_requests_lets_the_event_loop_run(demo_site: Any, tmp_path: Path) -> None:
    """A resumed start() whose requests were all handled is skipped in steps, not in one long stall."""
    settings = {"RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job"), "HTTPERROR_ALLOW_ALL": True}
    first = await crawl(StartSpider, settings, site=demo_site.url)
    assert first.stats.get_value("scheduler/enqueued") >= 3000  # every start request was handled
    second = await crawl(StartSpider, settings, site=demo_site.url)
    assert second.stats.get_value(stats.RESUME_COUNT) == 1
    assert second.spider.loop_ran_at is not None and second.spider.loop_ran_at < 1000


class ProviderSpider(PagesSpider):
    """Registers a state provider and saves a checkpoint from start() (as the monitor's SAVE_STATE does)."""

    restored: list[Any]

    async def start(self) -> AsyncIterator[Request]:
        self.restored = []
        extension = self.crawler.get_extension(CheckpointExtension)
        extension.register_state("probe", lambda: {"token": "t-1", "tabs": [1, 2]}, self.restored.append)
        self.checkpoint = await extension.save_checkpoint()
        async for request in super().start():
            yield request


@pytest_twisted.ensureDeferred
async def test_save_checkpoint_and_state_providers(demo_site: Any, tmp_path: Path) -> None:
    """save_checkpoint() writes a checkpoint at once; a provider's state is saved and handed back at resume."""
    settings = {"RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job")}
    first = await crawl(ProviderSpider, settings, site=demo_site.url, pages=1)
    assert first.spider.checkpoint.data.browser_state["probe"] == {"token": "t-1", "tabs": [1, 2]}
    assert first.spider.checkpoint.data.job_state["clean_close"] is False
    assert first.spider.restored == []
    second = await crawl(ProviderSpider, settings, site=demo_site.url, pages=1)
    assert second.spider.restored == [{"token": "t-1", "tabs": [1, 2]}]


class RetrySpider(Spider):
    """One URL that answers 503 for a while: its retry waits for a long backoff."""

    name = "retry"

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.url)

    def parse(self, response: Response) -> None:
        """Nothing to extract."""


@pytest_twisted.ensureDeferred
async def test_held_retries_restored_with_attempt_counts(demo_site: Any, tmp_path: Path) -> None:
    """A retry waiting for its backoff at close is held again at resume, same attempt count, same not-before."""
    demo_site.reset()
    url = demo_site.url + "/fault/status/503?key=checkpoint-held&times=5"
    settings = {
        "RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job"),
        "RESILIENCE_RETRY_BASE_DELAY": 30, "RESILIENCE_RETRY_JITTER": 0.0, "CLOSESPIDER_TIMEOUT": 1,
    }
    holds: list[list[tuple[int, float]]] = []

    async def run() -> Any:
        crawler = get_crawler(RetrySpider, {**BASE, **settings})
        seen: list[tuple[int, float]] = []
        holds.append(seen)
        crawler.signals.connect(lambda request, not_before: seen.append((request.meta["retry_times"], not_before)),
                                signal=resilience_signals.request_held, weak=False)
        await crawler.crawl(url=url)
        return crawler

    started = time.time()
    first = await run()
    assert first.stats.get_value("finish_reason") == "closespider_timeout"
    second = await run()
    assert holds[0] == holds[1][:1]  # the same retry: attempt 1, the same wall-clock not-before
    assert holds[0][0][0] == 1 and holds[0][0][1] > started + 20
    assert second.stats.get_value(stats.RESUME_REQUESTS_RESTORED) == 1
    hits = [entry for entry in demo_site.log() if "checkpoint-held" in entry["path"]]
    assert len(hits) == 1  # not sent again before its backoff ended


@pytest_twisted.ensureDeferred
async def test_children_copying_meta_get_their_own_ids(demo_site: Any, tmp_path: Path) -> None:
    """meta=response.meta does not make a child share its parent's resilience_id."""
    crawler = get_crawler(PagesSpider, {**BASE, "RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job")})
    ids: list[str] = []
    crawler.signals.connect(lambda request: ids.append(request.meta.get(ID_KEY)),
                            signal=scrapy_signals.response_received, weak=False)
    await crawler.crawl(site=demo_site.url, pages=3, copy_meta=True)
    assert len(ids) == 18 and len(set(ids)) == 18


class ErrbackChildrenSpider(Spider):
    """A page that is not found; its errback builds two children with the failed request's meta."""

    name = "errback-children"

    def __init__(self, site: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.site + "/no-such-page.html", errback=self.on_error)

    def on_error(self, failure: Any) -> Iterator[Request]:
        for n in (1, 2):
            yield Request(f"{self.site}/product/{n}.html", meta=failure.request.meta)

    def parse(self, response: Response) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_errback_children_copying_meta_get_their_own_ids(demo_site: Any, tmp_path: Path) -> None:
    """An errback's children are told from a retry of the failed request too: each is journaled under its own id."""
    job = tmp_path / "job"
    crawler = await crawl(ErrbackChildrenSpider, {"RESILIENCE_CHECKPOINT_DIR": str(job)}, site=demo_site.url)
    assert crawler.stats.get_value("response_received_count") == 3
    added = [record["a"] for record in journal_records(job) if "a" in record]
    assert len(added) == len(set(added)) == 3
    assert len({record["d"] for record in journal_records(job) if "d" in record}) == 3


class UnserializableSpider(Spider):
    name = "unserializable"

    def __init__(self, site: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site
        self.parsed = 0

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.site + "/product/1.html", meta={"handle": object()})

    def parse(self, response: Response) -> None:
        self.parsed += 1


@pytest_twisted.ensureDeferred
async def test_unserializable_request_is_crawled_counted_and_named(
    demo_site: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A request that cannot be checkpointed is still crawled; the error names its URL and meta key."""
    crawler = await crawl(UnserializableSpider, {"RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job")},
                          site=demo_site.url)
    assert crawler.spider.parsed == 1
    assert crawler.stats.get_value(stats.CHECKPOINT_UNSERIALIZABLE) == 1
    assert f"Request {demo_site.url}/product/1.html cannot be checkpointed: meta['handle']" in caplog.text


class OwnScheduler(ScrapyScheduler):
    """A project's own scheduler: the add-on leaves it in place."""


def journal_records(job: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(job.glob("journal/segment-*.jsonl"))
            for line in path.read_text().splitlines()]


@pytest.mark.parametrize("scheduler", [None, OwnScheduler])
@pytest_twisted.ensureDeferred
async def test_the_ledger_sees_every_request_with_either_scheduler(
    demo_site: Any, tmp_path: Path, scheduler: type | None
) -> None:
    """Scrapy's scheduler becomes JournaledScheduler; a project's own stays, and request_scheduled tells the ledger.

    Either way every request is journaled once, as it was scheduled: the
    User-Agent that a downloader middleware adds on its way out is not in its line.
    """
    job = tmp_path / "job"
    settings: dict[str, Any] = {"RESILIENCE_CHECKPOINT_DIR": str(job)}
    if scheduler is not None:
        settings["SCHEDULER"] = scheduler
    crawler = get_crawler(PagesSpider, {**BASE, **settings})
    schedulers: list[type] = []
    crawler.signals.connect(lambda: schedulers.append(type(crawler.engine._slot.scheduler)),
                            signal=scrapy_signals.spider_idle, weak=False)
    await crawler.crawl(site=demo_site.url)
    assert set(schedulers) == {scheduler or JournaledScheduler}
    receivers = dispatcher.liveReceivers(dispatcher.getAllReceivers(crawler.signals.sender,
                                                                    scrapy_signals.request_scheduled))
    ours = [receiver for receiver in receivers if receiver.__module__.startswith("scrapy_resilience")]
    # The ledger's receiver only with a project's scheduler; the held requests' only once one waits (none here).
    assert [receiver.__qualname__ for receiver in ours] == (["Ledger.entered_scheduler"] if scheduler else [])
    added = [record for record in journal_records(job) if "a" in record]
    assert len(added) == len({record["a"] for record in added}) == 18
    assert not any("User-Agent" in dict(record["r"].get("headers", [])) for record in added)
    assert crawler.stats.get_value("downloader/request_count") == 18
