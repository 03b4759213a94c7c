"""The frontier journal and ledger: replay, torn tails, compaction, the engine's "done", feed flushing."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from scrapy import Request, Spider
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from scrapy_resilience.checkpoint.ledger import flush_feeds, in_progress
from scrapy_resilience.checkpoint.sealing import COMPACT_MIN_BYTES, Sealer
from scrapy_resilience.jobdir.journal import (
    JournalWriter,
    Replay,
    count_settled,
    dumps,
    fingerprint_lines,
    segment_numbers,
    segment_path,
)
from scrapy_resilience.jobdir.resume import load_job

# One operation of the frontier on request "k": scheduled, in the downloader, held, done.
ops = st.lists(st.tuples(st.sampled_from("axhd"), st.integers(0, 5)), max_size=40)


def journal(operations: list[tuple[str, int]]) -> list[bytes]:
    lines = []
    for op, key in operations:
        record: dict[str, Any] = {op: str(key)}
        if op in "ah":
            record["r"] = {"url": f"http://127.0.0.1/{key}"}
        if op == "h":
            record["n"] = 1.5
        lines.append(dumps(record).encode() + b"\n")
    return lines


def model(operations: list[tuple[str, int]]) -> set[str]:
    pending: set[str] = set()
    for op, key in operations:
        if op in "ah":
            pending.add(str(key))
        elif op == "d":
            pending.discard(str(key))
    return pending


@given(operations=ops)
def test_every_prefix_replays_to_the_state_it_describes(operations: list[tuple[str, int]]) -> None:
    """Any prefix of the journal (what a kill leaves) replays to exactly the pending set at that point."""
    lines = journal(operations)
    for end in range(len(lines) + 1):
        replay = Replay()
        replay.feed(lines[:end])
        assert set(replay.pending) == model(operations[:end])


@given(operations=ops, seen=st.sets(st.binary(min_size=20, max_size=20), max_size=5))
def test_compacted_base_replays_the_same(operations: list[tuple[str, int]], seen: set[bytes]) -> None:
    """A base written from a replay holds the same pending requests, in-flight ids and fingerprints."""
    lines = journal(operations) + [dumps({"f": fp.hex()}).encode() + b"\n" for fp in seen]
    replay = Replay()
    replay.feed(lines)
    again = Replay()
    again.feed([*replay.frontier_lines(), *fingerprint_lines(lines)])
    assert dict(again.pending.items()) == dict(replay.pending.items())
    assert again.in_flight == replay.in_flight
    assert again.seen == replay.seen == seen


def test_torn_last_line_is_skipped() -> None:
    """A line cut by a kill (no newline) is counted as torn and ignored; everything before it counts."""
    replay = Replay()
    replay.feed([b'{"a":"1","r":{"url":"u"}}\n', b'{"a":"2","r":{"url":"u"}}'])
    assert list(replay.pending) == ["1"] and replay.torn == 1


def test_a_new_run_clears_in_flight() -> None:
    """Requests in the downloader when a run died are pending again, not in flight, once a new run starts."""
    replay = Replay()
    replay.feed([b'{"a":"1","r":{}}\n', b'{"x":"1"}\n', b'{"run":2}\n'])
    assert replay.in_flight == set() and replay.runs == 1 and "1" in replay.pending


def test_journal_writer_appends_in_order_and_rotates(tmp_path: Path) -> None:
    """Lines reach the segment in order; rotate seals it and opens the next; files are owner-only."""
    writer = JournalWriter(tmp_path / "journal", 7)
    writer.write(['{"a":"1"}', '{"d":"1"}'])
    assert writer.rotate().result(timeout=10) == 7
    writer.write(['{"f":"00"}'])
    writer.close()
    assert segment_numbers(tmp_path / "journal") == [7, 8]
    assert segment_path(tmp_path / "journal", 7).read_text().splitlines() == ['{"a":"1"}', '{"d":"1"}']
    assert segment_path(tmp_path / "journal", 8).read_text() == '{"f":"00"}\n'
    assert stat.S_IMODE(segment_path(tmp_path / "journal", 7).stat().st_mode) == 0o600
    assert count_settled(tmp_path / "journal", after=0) == (1, 0)
    assert count_settled(tmp_path / "journal", after=7) == (0, 0)


class ProbeSpider(Spider):
    """Looks at the engine from inside its callbacks."""

    name = "probe"

    def __init__(self, site: str, feed: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site, self.feed = site, Path(feed)
        self.inside: list[bool] = []
        self.on_disk: list[tuple[int, int]] = []

    async def start(self) -> AsyncIterator[Request]:
        assert not in_progress(self.crawler)  # nothing yet
        yield Request(self.site + "/catalogue/page-1.html")

    def parse(self, response: Response) -> Iterator[Any]:
        self.inside.append(response.request in in_progress(self.crawler))
        for href in response.css("li.product a::attr(href)").getall()[:12]:
            yield response.follow(href, callback=self.parse_product)

    def parse_product(self, response: Response) -> Iterator[dict[str, Any]]:
        self.inside.append(response.request in in_progress(self.crawler))
        flush_feeds(self.crawler)
        scraped = self.crawler.stats.get_value("item_scraped_count", 0)
        on_disk = len(self.feed.read_bytes().splitlines()) if self.feed.exists() else 0
        self.on_disk.append((scraped, on_disk))
        yield {"sku": response.css("span.sku::text").get(), "padding": "x" * 300}


@pytest_twisted.ensureDeferred
async def test_in_progress_and_feed_flush(demo_site: Any, tmp_path: Path) -> None:
    """A request is in progress during its callback; flush_feeds puts every exported item on disk."""
    feed = tmp_path / "items.jsonl"
    crawler = get_crawler(ProbeSpider, {"FEEDS": {str(feed): {"format": "jsonlines"}}, "CONCURRENT_REQUESTS": 2,
                                        "TELNETCONSOLE_ENABLED": False})
    await crawler.crawl(site=demo_site.url, feed=str(feed))
    spider = crawler.spider
    assert spider.inside and all(spider.inside)
    assert len(spider.on_disk) > 5 and all(on_disk == scraped for scraped, on_disk in spider.on_disk)
    assert not in_progress(crawler)  # closed: nothing in progress
    assert len(feed.read_text().splitlines()) == crawler.stats.get_value("item_scraped_count")
    assert json.loads(feed.read_text().splitlines()[0])["sku"]


def test_many_deltas_merge_and_load_the_same(tmp_path: Path) -> None:
    """Past 32 small deltas a checkpoint merges them into one, torn lines dropped; the job loads the same."""
    journal = tmp_path / "journal"
    journal.mkdir()
    for number in range(1, 34):
        lines = [dumps({"a": f"1.{number}", "r": {"url": f"http://127.0.0.1/{number}"}}),
                 dumps({"f": f"{number:040x}"})]
        if number % 2:
            lines.append(dumps({"d": f"1.{number - 1}"}))
        text = "\n".join(lines) + "\n" + ('{"a":"torn' if number == 10 else "")
        segment_path(journal, number).write_text(text)
    sealer = Sealer(tmp_path, job_id="j", retention=3, compress=False)
    state = {"spider_state": {}, "stats": {}, "requests_done": 0, "processing_time": 1.0, "journal_upto": 33}
    progress = {"total_count": 0, "current_item": "", "completed_items": [], "completion_percentage": 0.0}
    sealer.seal(fds=[], sealed=33, job_state=state, browser_state={}, progress=progress, errors=[], snapshot=None)
    assert list(sealer.chain) == ["delta-00000033"]
    job = load_job(sealer.store, journal, poison_limit=3)
    assert set(job.replay.pending) == {f"1.{n}" for n in range(1, 34, 2)}  # each odd segment finished the one before
    assert len(job.replay.seen) == 33 and job.replay.torn == 0


def test_deltas_compact_once_they_end_requests(tmp_path: Path) -> None:
    """Deltas that only add requests stay deltas (a base would be as big); once they end them, they compact."""
    journal = tmp_path / "journal"
    journal.mkdir()
    count = 80_000  # over COMPACT_MIN_BYTES of "a" lines
    added = [dumps({"a": f"1.{n}", "r": {"url": f"http://127.0.0.1/product/{n}.html?page={n}"}}) for n in range(count)]
    segment_path(journal, 1).write_text("\n".join(added) + "\n")
    assert segment_path(journal, 1).stat().st_size > COMPACT_MIN_BYTES
    sealer = Sealer(tmp_path, job_id="j", retention=3, compress=False)
    state = {"spider_state": {}, "stats": {}, "requests_done": 0, "processing_time": 1.0, "journal_upto": 1}
    progress = {"total_count": 0, "current_item": "", "completed_items": [], "completion_percentage": 0.0}
    sealer.seal(fds=[], sealed=1, job_state=state, browser_state={}, progress=progress, errors=[], snapshot=None)
    assert list(sealer.chain) == ["delta-00000001"]
    ended = [dumps({"d": f"1.{n}"}) for n in range(count // 2)]
    segment_path(journal, 2).write_text("\n".join(ended) + "\n")
    sealer.seal(fds=[], sealed=2, job_state={**state, "journal_upto": 2}, browser_state={}, progress=progress,
                errors=[], snapshot=None)
    assert list(sealer.chain) == ["base"]
    job = load_job(sealer.store, journal, poison_limit=3)
    assert set(job.replay.pending) == {f"1.{n}" for n in range(count // 2, count)}
