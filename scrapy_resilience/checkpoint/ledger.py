"""The frontier ledger: every request from its scheduling until it is done.

A request is identified by ``meta["resilience_id"]`` (a disk queue or a retry
hands back a different object, so identity cannot be used). The ledger keeps
almost nothing in memory: a pending request lives in the scheduler and, as an
``"a"`` line, in the journal (``jobdir/journal.py``); only the requests inside
the engine right now (at most ``CONCURRENT_REQUESTS``) are kept, by id.

A request is told to the ledger as it enters the scheduler: by
``checkpoint/scheduler.JournaledScheduler`` (Scrapy's own scheduler, which the
add-on replaces with it), or by the ``request_scheduled`` signal for any
other scheduler. Its ``"a"`` line is encoded in batches, when the buffer is
flushed or a request enters the downloader (downloader middlewares change
requests: Cookie, User-Agent), so the encoder runs in one tight loop rather
than once per request between Scrapy's own steps; or at once, when a memory
queue keeps the request as that text (``spill.py``).

*Done* means the engine removed the request from its in-progress set: by then
everything its callback or errback produced has been scheduled or has left
the item pipelines (see ``in_progress``). ``sweep`` finds those requests,
flushes the feed exporters' files so that their items are in the feed files,
and only then journals them as done. A held retry (``signals.request_held``)
is journaled as an ``"h"`` line and is no longer tracked in the engine. The
two middlewares that feed it are in ``frontier.py``.
"""

from __future__ import annotations

import itertools
import logging
import weakref
from collections.abc import Callable, Collection
from typing import IO, Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.extensions.feedexport import FeedExporter

from scrapy_resilience import signals as resilience_signals
from scrapy_resilience import stats
from scrapy_resilience.checkpoint import codec
from scrapy_resilience.exceptions import UnserializableRequestError
from scrapy_resilience.jobdir.journal import JournalWriter, dumps
from scrapy_resilience.meta import ID_KEY, LEDGER_KEYS, RESTORED_KEY, START_KEY

logger = logging.getLogger(__name__)

_FLUSH_LINES = 10_000  # hand the buffer to the writer at this size even between sweeps


def in_progress(crawler: Crawler) -> Collection[Request]:
    """The requests the engine is working on (downloading, or processing their output).

    The only access to a private Scrapy attribute in the ledger: the engine
    removes a request from ``engine._slot.inprogress`` once its download,
    callback or errback, scheduling of children and item pipelines are all
    finished, the one exact "done" moment Scrapy has (no signal marks it).
    No slot (spider closed, or not opened yet) means nothing in progress.
    """
    slot = getattr(crawler.engine, "_slot", None)
    return slot.inprogress if slot is not None else ()


def in_callbacks(crawler: Crawler) -> Collection[Request]:
    """The requests whose callback or errback output Scrapy's scraper is handling now.

    A private Scrapy attribute too: ``scraper.slot.active`` holds the engine's
    request from the moment its response (or failure) reaches the scraper
    until everything its callback or errback produced has been handled. A
    request scheduled meanwhile with the same id is one of its children.
    """
    slot = getattr(getattr(crawler.engine, "scraper", None), "slot", None)
    return slot.active if slot is not None else ()


def feed_files(crawler: Crawler) -> list[IO[Any]]:
    """The open files (and exporter streams) of Scrapy's FEEDS, to flush before journaling "done"."""
    exporter = crawler.get_extension(FeedExporter) if crawler.engine is not None else None
    files: list[IO[Any]] = []
    for slot in getattr(exporter, "slots", ()):
        # Some exporters (CSV) wrap the file in a text stream with its own buffer.
        stream = getattr(slot.exporter, "stream", None)
        files.extend(f for f in (stream, slot.file) if f is not None and not f.closed)
    return files


def flush_feeds(crawler: Crawler) -> list[int]:
    """Flush the feed files to the OS (enough for a SIGKILL); return their fds to fsync off-thread."""
    fds = []
    for file in feed_files(crawler):
        try:
            file.flush()
            fds.append(file.fileno())
        except (ValueError, OSError):  # closed meanwhile, or not a real file (stdout, a pipe)
            continue
    return fds


def _pending_line(key: str, request_json: str) -> str:
    # Ids are "<run>.<n>" (or restored ones): plain ASCII, no JSON escaping needed.
    return '{"a":"' + key + '","r":' + request_json + "}"


class Ledger:
    """One per crawler (``get_ledger``): journals the frontier and finds done requests."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.writer: JournalWriter | None = None  # set by the checkpoint extension once the job is loaded
        self.run = 1
        self._ids = itertools.count(1)
        # Journaled before the writer exists, or since the last flush: lines, and
        # (id, request) pairs whose "a" line is not encoded yet, from _unencoded on.
        self._lines: list[str | tuple[str, Request]] = []
        self._unencoded: int | None = None
        self._newest: int | None = None  # where the newest (id, request) pair is in the buffer
        self._flying: dict[str, Request] = {}
        self._pass_once: set[str] = set()
        self._flush_soon: Any = None
        # Scheduled, waiting for the dupefilter's verdict: (id, request, whether the id was journaled before).
        self._awaiting: tuple[str, Request, bool] | None = None
        self.deduplicates = False  # set by ResilientDupeFilter: it calls admitted()
        self.on_done: Callable[[list[str]], None] | None = None
        self.scheduled = 0
        self.completed = 0
        self.unserializable = 0
        self.recent_done: list[str] = []  # URLs, a bounded sample for ProgressState
        crawler.signals.connect(self.entered_scheduler, signal=signals.request_scheduled)
        crawler.signals.connect(self._dropped, signal=signals.request_dropped)
        crawler.signals.connect(self._held, signal=resilience_signals.request_held)

    # -- journal -----------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        self._lines.append(dumps(record))

    def told_by_scheduler(self) -> None:
        """The scheduler calls ``entered_scheduler`` itself: the signal, a few microseconds a request, is not needed."""
        self.crawler.signals.disconnect(self.entered_scheduler, signal=signals.request_scheduled)

    def flush(self) -> None:
        """Append the buffered lines to the journal (the page cache: microseconds, see ``JournalWriter``)."""
        self._add_awaiting()
        if self.writer is None or not self._lines:
            return
        self._encode()
        lines, self._lines, self._newest = self._lines, [], None
        self.writer.write(lines)  # type: ignore[arg-type]  # all encoded now

    def _flush_later(self) -> None:
        # A request entering the downloader may be the one that kills the
        # process; its "x" line must reach the file promptly, once per loop turn.
        if self._flush_soon is None:
            from scrapy.utils.asyncio import call_later

            self._flush_soon = call_later(0, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_soon = None
        self.flush()

    def _encode(self) -> None:
        """Turn the buffer's (id, request) pairs into their "a" lines, in place; drop the unserializable ones."""
        if self._unencoded is None:
            return
        spider, lines = self.crawler.spider, self._lines
        encoded = lines[: self._unencoded]
        for line in lines[self._unencoded :]:
            if isinstance(line, str):
                encoded.append(line)
                continue
            key, request = line
            try:
                encoded.append(_pending_line(key, codec.dumps(request, spider)))
            except UnserializableRequestError as exc:
                self.unserializable += 1
                self.crawler.stats.inc_value(stats.CHECKPOINT_UNSERIALIZABLE)
                logger.error("%s; it is crawled but would be lost in a crash", exc)
        self._lines, self._unencoded, self._newest = encoded, None, None

    def _add(self, key: str, request: Request) -> None:
        if self._unencoded is None:
            self._unencoded = len(self._lines)
        self._newest = len(self._lines)
        self._lines.append((key, request))
        if request.meta.get(START_KEY):
            self._lines.append('{"s":"' + self.crawler.request_fingerprinter.fingerprint(request).hex() + '"}')
        if len(self._lines) >= _FLUSH_LINES:
            self.flush()

    def request_json(self, request: Request) -> str | None:
        """The JSON of ``request`` (as in its "a" line), or None if it cannot be encoded.

        The request journaled last, still waiting in the buffer, is encoded
        now and its "a" line with it, rather than twice. Any other (a
        restored request, not journaled again) is encoded for the caller
        only. An unserializable one is reported when the buffer is flushed.
        """
        entry = self._lines[self._newest] if self._newest is not None else None
        try:
            text = codec.dumps(request, self.crawler.spider)
        except UnserializableRequestError:
            return None
        if type(entry) is tuple and entry[1] is request:
            self._lines[self._newest] = _pending_line(entry[0], text)  # type: ignore[index]
        return text

    def _add_awaiting(self) -> None:
        # The dupefilter did not judge the last scheduled request (a custom
        # scheduler): journal it anyway, a duplicate line costs less than a loss.
        if self._awaiting is not None:
            key, request, _ = self._awaiting
            self._awaiting = None
            self._add(key, request)

    # -- signals -------------------------------------------------------------

    def entered_scheduler(self, request: Request) -> None:
        """``request`` enters the scheduler: give it an id, and journal it (once the dupefilter admits it)."""
        if self._awaiting is not None:
            self._add_awaiting()
        meta = request.meta
        key: str | None = meta.get(ID_KEY)
        if key is not None and self._flying.get(key) in in_callbacks(self.crawler):
            # A child built with meta=response.meta: it is a request of its own
            # and must not carry its parent's id, crash count or start mark.
            for name in LEDGER_KEYS:
                meta.pop(name, None)
            key = None
        known = key is not None
        if key is None:
            key = meta[ID_KEY] = f"{self.run}.{next(self._ids)}"
        else:
            # A redirect or retry of a request in the engine: the new request
            # carries the work on; the old object leaving the engine is not "done".
            self._flying.pop(key, None)
        self.scheduled += 1
        restored = meta.pop(RESTORED_KEY, False)
        if restored:
            self._pass_once.add(key)  # its fingerprint is already seen: it passes the dupefilter once
        if restored is True:
            return  # its "a" line is already in the checkpoint, unchanged
        if request.dont_filter or not self.deduplicates:
            self._add(key, request)
        else:
            # Serialized only once our dupefilter admits it: most links found
            # in pages are duplicates, and they cost nothing this way.
            self._awaiting = (key, request, known)

    def admitted(self, request: Request, fingerprint: bytes | None) -> None:
        """Our dupefilter let ``request`` through (new ``fingerprint``, or a restored request)."""
        if self._awaiting is not None and self._awaiting[1] is request:
            self._add_awaiting()
        if fingerprint is not None:
            self._lines.append('{"f":"' + fingerprint.hex() + '"}')

    def _dropped(self, request: Request) -> None:
        if self._awaiting is not None and self._awaiting[1] is request:
            _, _, known = self._awaiting
            self._awaiting = None
            if not known:
                return  # a new request never journaled: nothing to undo
            # A redirect to a page seen already: the request it continues is finished.
        key = request.meta.get(ID_KEY)
        if key is not None:
            self._lines.append('{"d":"' + key + '"}')
            if self.on_done is not None:
                self.on_done([key])

    def _held(self, request: Request, not_before: float) -> None:
        key = request.meta.get(ID_KEY)
        if key is None:
            return
        self._flying.pop(key, None)
        if self._awaiting is not None and self._awaiting[0] == key:
            self._awaiting = None  # held on request_scheduled (IgnoreRequest): the "h" line says it all
        try:
            line = codec.dumps(request, self.crawler.spider)
        except UnserializableRequestError as exc:
            logger.error("%s; its retry would be lost in a crash", exc)
            return
        self._lines.append('{"h":"' + key + '","r":' + line + ',"n":' + repr(float(not_before)) + "}")
        if self.on_done is not None:
            self.on_done([key])  # out of the engine until its backoff ends

    def passes_once(self, request: Request) -> bool:
        """True once for a request put back at resume: the dupefilter must not drop it."""
        if not self._pass_once:  # nothing restored is waiting: the common case
            return False
        key = request.meta.get(ID_KEY)
        if key in self._pass_once:
            self._pass_once.discard(key)
            return True
        return False

    def keep_pending(self, request: Request) -> None:
        """Forget that ``request`` entered the engine: it is not done when it leaves."""
        key = request.meta.get(ID_KEY)
        if key is not None:
            self._flying.pop(key, None)

    def entered_downloader(self, request: Request) -> None:
        key = request.meta.get(ID_KEY)
        if key is None:  # not from the scheduler (engine.download_async, robots.txt)
            return
        self._flying[key] = request
        self._encode()  # before the downloader middlewares after this one change the request
        self._lines.append('{"x":"' + key + '"}')
        self._flush_later()

    # -- done ------------------------------------------------------------------

    def sweep(self) -> list[int]:
        """Journal the requests that left the engine as done; return the feed fds to fsync."""
        engine_has = in_progress(self.crawler)
        done = [key for key, request in self._flying.items() if request not in engine_has]
        fds = flush_feeds(self.crawler)  # their items reach the feed files before "done" does
        for key in done:
            request = self._flying.pop(key)
            self._lines.append('{"d":"' + key + '"}')
            self.recent_done.append(request.url)
        del self.recent_done[:-20]
        self.completed += len(done)
        self.flush()
        if done and self.on_done is not None:
            self.on_done(done)
        return fds

    @property
    def flying(self) -> int:
        return len(self._flying)

    def is_flying(self, key: str) -> bool:
        """Whether request ``key`` is inside the engine (entered the downloader, not done yet)."""
        return key in self._flying


_ledgers: weakref.WeakKeyDictionary[Crawler, Ledger] = weakref.WeakKeyDictionary()


def get_ledger(crawler: Crawler) -> Ledger:
    """The ledger of ``crawler``, created on first use."""
    if crawler not in _ledgers:
        _ledgers[crawler] = Ledger(crawler)
    return _ledgers[crawler]
