"""The checkpoint extension: periodic crash-safe checkpoints, and resume.

Enabled by the add-on when ``RESILIENCE_CHECKPOINT_DIR`` is set. Every
``RESILIENCE_CHECKPOINT_INTERVAL`` seconds, and when the spider closes, it
takes a consistent cut of the crawl: on the reactor thread it journals the
requests done so far (after flushing the feed files), seals the current
journal segment and copies the small state (``spider.state``, the stats
counters, the registered providers' state); in a worker thread it fsyncs the
feeds and the segment, stores the sealed segments as delta sidecars
(compacting them into a base now and then) and commits the manifest through
``store.CheckpointStore``. Nothing slow runs on the reactor thread.

At ``spider_opened`` it loads the job (``resume.load_job``) and puts
everything back: pending requests (``refill.RefillQueue``, as the scheduler drains),
retries waiting for their backoff (re-held by our retry middleware), the
duplicate filter, ``spider.state``, the stats counters and the providers'
state. Requests in flight when the job died again and again are put back one
at a time, or set aside as poison (``suspects.SuspectProbe``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from scrapy.utils.log import failure_to_exc_info
from twisted.internet.defer import DeferredLock
from twisted.internet.threads import deferToThread

from scrapy_resilience import signals as resilience_signals
from scrapy_resilience import stats
from scrapy_resilience.checkpoint import codec
from scrapy_resilience.checkpoint.frontier import spider_middleware
from scrapy_resilience.checkpoint.ledger import get_ledger
from scrapy_resilience.checkpoint.refill import RefillQueue
from scrapy_resilience.checkpoint.sealing import Sealer, repair_feeds, restore_stats, snapshot_stats
from scrapy_resilience.checkpoint.suspects import SuspectProbe
from scrapy_resilience.jobdir.journal import JOURNAL_DIR, JournalWriter, segment_numbers
from scrapy_resilience.jobdir.lock import JobLock
from scrapy_resilience.jobdir.resume import DEFAULT_POISON_CRASHES, LoadedJob, load_job
from scrapy_resilience.meta import RESTORED_KEY
from scrapy_resilience.model.entities import Checkpoint, ResourceSnapshot
from scrapy_resilience.retry.middleware import RetryMiddleware
from scrapy_resilience.settings import AbortConfig, CheckpointConfig

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 0.05  # seconds between "done" sweeps: the most a killed crawl redoes beyond what was in flight


class CheckpointExtension:
    """See the module docstring. Public: ``save_checkpoint``, ``crashes``, ``register_state``."""

    def __init__(self, crawler: Crawler) -> None:
        self.config = CheckpointConfig.from_settings(crawler.settings)
        if not self.config.enabled:
            raise NotConfigured("RESILIENCE_CHECKPOINT_DIR is not set")
        abort = AbortConfig.from_settings(crawler.settings)
        self.poison_limit = abort.consecutive_crashes or DEFAULT_POISON_CRASHES
        self.crawler = crawler
        self.directory = Path(self.config.directory or "")
        self.journal_dir = self.directory / JOURNAL_DIR
        # Before anything in the directory is read, repaired or cleaned up.
        self.job_lock = JobLock(self.directory)
        self.job_lock.acquire()
        self.ledger = get_ledger(crawler)
        self.suspects = SuspectProbe(crawler, self.ledger, lambda record: self._restored(record, changed=True))
        self.sealer = Sealer(self.directory, job_id=self.config.job_id or crawler.spidercls.name,
                             retention=self.config.retention, compress=self.config.compress)
        self._providers: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {}
        self._lock = DeferredLock()
        self._loops: list[Any] = []
        self.job: LoadedJob | None = None
        self.refill: RefillQueue | None = None
        self.crashes = 0  # deaths of the job in a row without progress before this run, known at spider_opened
        self.runs = 1
        self._started = time.monotonic()
        self._errors: list[Any] = []
        self._closed = False
        # The monitor, when enabled, points this at its latest resource reading.
        self.resource_snapshot: Callable[[], ResourceSnapshot | None] = lambda: None
        if segment_numbers(self.journal_dir) or self.sealer.store.next_sequence > 1:
            # A killed run may have torn the last line of a JSON lines feed;
            # the resumed run appends to it, so cut the torn piece first.
            repair_feeds(crawler.settings)
        crawler.signals.connect(self._spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(self._failure_recorded, signal=resilience_signals.failure_recorded)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CheckpointExtension:
        return cls(crawler)

    # -- public API ----------------------------------------------------------------

    def register_state(self, name: str, save: Callable[[], Any | Awaitable[Any]],
                       restore: Callable[[Any], Any | Awaitable[Any]]) -> None:
        """Keep ``save()``'s JSON value in ``data.browser_state[name]``; ``restore(value)`` it at resume.

        A provider registered after the job was loaded is restored at once
        (an awaitable result is scheduled), so the order in which components
        start does not matter.
        """
        self._providers[name] = (save, restore)
        if self.job is not None and self.job.checkpoint is not None and name in self.job.checkpoint.data.browser_state:
            result = restore(self.job.checkpoint.data.browser_state[name])
            if isinstance(result, Awaitable):
                deferred_from_coro(_awaited(result))

    async def save_checkpoint(self, reason: str | None = None) -> Checkpoint | None:
        """Write a checkpoint now (the monitor's SAVE_STATE); None if the spider is not running.

        ``reason`` is why the crawl is being stopped: recorded as the
        checkpoint's ``close_reason`` so that, should the close itself never
        finish and the process be forced down, the supervisor still knows it.
        """
        if self.job is None or self._closed:
            return None
        return await self._save(final=False, reason=reason)

    # -- resume ----------------------------------------------------------------------

    async def _spider_opened(self, spider: Any) -> None:
        job = await in_thread(load_job, self.sealer.store, self.journal_dir, self.poison_limit)
        self.job = job
        self.crashes, self.runs = job.crashes, job.runs + 1
        self.sealer.start_from(job)
        first = max([job.journal_upto, *segment_numbers(self.journal_dir)]) + 1
        self.ledger.run = self.runs
        self.ledger.append({"run": self.runs, "pid": os.getpid(), "t": time.time()})
        self.ledger.writer = await in_thread(JournalWriter, self.journal_dir, first)
        self.ledger.flush()
        if not hasattr(spider, "state"):
            spider.state = {}
        if job.resuming:
            await self._restore(spider, job)
        for loop, interval in ((create_looping_call(self.ledger.sweep), SWEEP_INTERVAL),
                               (create_looping_call(self._periodic), self.config.interval)):
            loop.start(interval, now=False)
            self._loops.append(loop)

    async def _restore(self, spider: Any, job: LoadedJob) -> None:
        state = job.job_state
        spider.state.update(codec.from_json(state.get("spider_state")) or {})
        restore_stats(self.crawler.stats, state.get("stats") or {})
        dupefilter = getattr(self.crawler.engine.scheduler, "df", None)
        if dupefilter is not None and hasattr(dupefilter, "restore"):
            dupefilter.restore(job.replay.seen)
        for name, value in (job.checkpoint.data.browser_state if job.checkpoint else {}).items():
            if name in self._providers:
                result = self._providers[name][1](value)
                if isinstance(result, Awaitable):
                    await result
        held = [(self._restored(record, changed=True), float(record["n"])) for record in job.held]
        middleware = spider_middleware(self.crawler)
        if middleware is not None:
            middleware.start_seen = job.replay.start_seen
        self.suspects.start(job)
        restored = len(job.replay.pending) + len(held) + len(job.suspects)
        # Kept here: the signals hold only a weak reference to it.
        self.refill = RefillQueue(self.crawler, job.replay.pending,
                                  lambda key, record: self._restored(record, changed=key in job.changed))
        self.refill.start()
        for request, not_before in held:
            self._hold(request, not_before)
        self.crawler.stats.inc_value(stats.RESUME_COUNT)
        self.crawler.stats.set_value(stats.RESUME_REQUESTS_RESTORED, restored)
        self.crawler.stats.set_value(stats.RESUME_CRASHES, job.crashes)
        if job.corrupted:
            self.crawler.stats.set_value(stats.CHECKPOINT_CORRUPTED, job.corrupted)
        logger.info(
            "Resuming job %s from checkpoint %s (%d corrupted ones passed over) and its journal: "
            "%d requests restored (%d in flight when the job died, %d waiting for a retry, %d put back one "
            "at a time as suspects, %d set aside as poison), %d fingerprints; run %d, %d deaths in a row "
            "without progress",
            self.sealer.store.job_id, job.checkpoint.sequence_number if job.checkpoint else "none",
            job.corrupted, restored, len(job.replay.in_flight) if job.died else 0, len(held),
            len(job.suspects), len(job.poison), len(job.replay.seen), self.runs, job.crashes,
        )

    def _restored(self, record: dict[str, Any], *, changed: bool) -> Request:
        request = codec.decode_request(record["r"], self.crawler.spider)
        request.meta[RESTORED_KEY] = "changed" if changed else True
        return request

    def _hold(self, request: Request, not_before: float) -> None:
        retry = self.crawler.get_downloader_middleware(RetryMiddleware)
        if retry is None:
            self.crawler.engine.crawl(request)
        else:
            retry.hold(request, not_before)

    # -- checkpoints -------------------------------------------------------------------

    def _periodic(self) -> None:
        if self._lock.locked:
            return  # the previous checkpoint is still being written
        deferred_from_coro(self._save(final=False, reason=None)).addErrback(
            lambda failure: logger.error("Checkpoint failed: %s", failure.getErrorMessage(),
                                         exc_info=failure_to_exc_info(failure))
        )

    async def _spider_closed(self, spider: Any, reason: str) -> None:
        self._closed = True  # after the final checkpoint, the journal is closed
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self.job is None:
            self.job_lock.release()
            return
        try:
            await self._save(final=True, reason=reason)
        finally:
            if self.ledger.writer is not None:
                self.ledger.flush()
                await in_thread(self.ledger.writer.close)
            self.job_lock.release()

    async def _save(self, *, final: bool, reason: str | None) -> Checkpoint | None:
        await maybe_deferred_to_future(self._lock.acquire())
        try:
            fds = self.ledger.sweep()
            assert self.ledger.writer is not None
            sealed = await asyncio.wrap_future(self.ledger.writer.rotate())
            browser_state = {}
            for name, (save, _) in self._providers.items():
                try:
                    value = save()
                    browser_state[name] = await value if isinstance(value, Awaitable) else value
                except Exception:
                    # One provider's bug must not cost the whole checkpoint (the frontier matters most).
                    logger.exception("State provider %r failed; its state is left out of this checkpoint", name)
            snapshot = self.resource_snapshot()
            job_state: dict[str, Any] = {
                "journal_upto": sealed, "runs": self.runs, "crashes": self.crashes,
                "progressed": self.ledger.completed > 0,
                "clean_close": final, "close_reason": reason,
                "spider_state": getattr(self.crawler.spider, "state", {}),
                "stats": snapshot_stats(self.crawler.stats),
                "requests_done": int((self.job.job_state if self.job else {}).get("requests_done", 0))
                + self.ledger.completed,
                "processing_time": self._processing_time(),
            }
            checkpoint = await in_thread(
                self.sealer.seal, fds=fds, sealed=sealed, job_state=job_state, browser_state=browser_state,
                progress=self._progress(int(job_state["requests_done"])), errors=self._take_errors(),
                snapshot=snapshot,
            )
        finally:
            self._lock.release()
        self.crawler.stats.inc_value(stats.CHECKPOINT_COUNT)
        self.crawler.stats.set_value(stats.CHECKPOINT_LAST_SEQUENCE, checkpoint.sequence_number)
        self.crawler.signals.send_catch_log(resilience_signals.checkpoint_saved, checkpoint=checkpoint,
                                            spider=self.crawler.spider)
        logger.debug("Checkpoint %d saved", checkpoint.sequence_number)
        return checkpoint

    def _processing_time(self) -> float:
        before = float((self.job.job_state if self.job else {}).get("processing_time", 0.0))
        return before + time.monotonic() - self._started

    def _pending(self) -> int:
        engine = self.crawler.engine
        scheduler = getattr(engine, "scheduler", None) if engine is not None else None
        try:
            queued = len(scheduler) if scheduler is not None else 0
        except TypeError:  # a scheduler without __len__
            queued = 0
        return queued + self.ledger.flying + (len(self.job.replay.pending) if self.job else 0)

    def _progress(self, done: int) -> dict[str, Any]:
        pending = self._pending()
        total = done + pending
        return {
            "current_item": self.ledger.recent_done[-1] if self.ledger.recent_done else "",
            "completed_items": list(self.ledger.recent_done),
            "total_count": total,
            "completion_percentage": round(100.0 * done / total, 3) if total else 100.0,
            "pending": pending,
        }

    def _failure_recorded(self, event: Any) -> None:
        self._errors.append(event)
        del self._errors[:-100]  # bounded: the manifest stays small

    def _take_errors(self) -> list[Any]:
        errors, self._errors = self._errors, []
        return errors


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` in Twisted's thread pool, awaited."""
    return await maybe_deferred_to_future(deferToThread(function, *args, **kwargs))
