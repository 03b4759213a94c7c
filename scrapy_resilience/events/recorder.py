"""FailureEvents: built once, counted, signalled and logged to the job's event log.

Shared by the retry middleware, the checkpoint extension and the monitor::

    recorder = get_recorder(crawler)
    event = recorder.record(category=..., severity=..., recovery_action=...,
                            source="retry", message="...", correlation_id=...)

``record`` is cheap and runs on the reactor thread: it builds a
``models.FailureEvent``, increments ``resilience/failures/<category>``, sends
``signals.failure_recorded(event, spider)`` and, when
``RESILIENCE_CHECKPOINT_DIR`` is set, queues the event for the job's event log.
Queued events are appended in batches by one worker thread at a time, so the
file I/O never blocks the reactor and events keep their order; the queue is
drained when the spider closes.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from scrapy import signals as scrapy_signals
from scrapy.crawler import Crawler
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from scrapy_resilience import signals, stats
from scrapy_resilience.events.log import EventLog
from scrapy_resilience.model.entities import FailureCategory, FailureEvent, FailureSeverity, RecoveryAction
from scrapy_resilience.settings import read

logger = logging.getLogger(__name__)

_recorders: weakref.WeakKeyDictionary[Crawler, FailureRecorder] = weakref.WeakKeyDictionary()


class FailureRecorder:
    """One per crawler (``get_recorder``); see the module docstring."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        directory = read(crawler.settings, "RESILIENCE_CHECKPOINT_DIR")
        self._log: EventLog | None = None
        if read(crawler.settings, "RESILIENCE_ENABLED") and directory is not None:
            self._log = EventLog(directory, retention=read(crawler.settings, "RESILIENCE_EVENT_RETENTION"))
        self.job_id: str | None = read(crawler.settings, "RESILIENCE_JOB_ID")
        self._queue: list[FailureEvent] = []
        self._flushing: Deferred[None] | None = None
        crawler.signals.connect(self._spider_closed, signal=scrapy_signals.spider_closed)

    def record(
        self,
        *,
        category: FailureCategory,
        severity: FailureSeverity,
        recovery_action: RecoveryAction,
        source: str,
        message: str,
        context: dict[str, Any] | None = None,
        stack_trace: str = "",
        correlation_id: str | None = None,
    ) -> FailureEvent:
        """Build, count, signal and (with a job directory) log one FailureEvent."""
        context = dict(context or {})
        spider = self.crawler.spider
        job_id = self.job_id or getattr(spider, "name", None)
        if job_id is not None:
            context.setdefault("job_id", job_id)
        event = FailureEvent(
            severity=severity,
            category=category,
            source=source,
            message=message,
            context=context,
            stack_trace=stack_trace,
            recovery_action=recovery_action,
            correlation_id=correlation_id or "",
        )
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value(stats.failures(category.value))
        self.crawler.signals.send_catch_log(signals.failure_recorded, event=event, spider=spider)
        if self._log is not None:
            self._queue.append(event)
            self._flush()
        return event

    def _flush(self) -> Deferred[None] | None:
        """Start one background append of everything queued, unless one is running."""
        if self._flushing is not None or not self._queue or self._log is None:
            return self._flushing
        batch, self._queue = self._queue, []
        self._flushing = deferToThread(self._append, self._log, batch)
        self._flushing.addErrback(self._log_error)
        self._flushing.addBoth(self._flushed)
        return self._flushing

    @staticmethod
    def _append(log: EventLog, batch: list[FailureEvent]) -> None:
        for event in batch:
            log.append(event)

    @staticmethod
    def _log_error(failure: Any) -> None:
        # The event log is an aid, not the crawl: a full disk must not stop it.
        logger.error("Could not append failure events to the event log", exc_info=failure.value)

    def _flushed(self, _: Any) -> None:
        self._flushing = None
        self._flush()

    async def _spider_closed(self) -> None:
        """Drain the queue before the crawl ends, so no recorded event is lost."""
        while self._flushing is not None or self._queue:
            pending = self._flushing or self._flush()
            if pending is not None:
                await maybe_deferred_to_future(pending)
        if self._log is not None:
            self._log.close()


def get_recorder(crawler: Crawler) -> FailureRecorder:
    """The crawler's FailureRecorder, created on first use."""
    recorder = _recorders.get(crawler)
    if recorder is None:
        recorder = _recorders[crawler] = FailureRecorder(crawler)
    return recorder
