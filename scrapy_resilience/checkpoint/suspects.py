"""Requests in flight when the job died: put back one at a time, or set aside as poison.

``resume.load_job`` judges them: a request in flight at ``limit`` deaths of
the job in a row is poison; one at its second death in a row or more is a
suspect. ``SuspectProbe`` sets the poison ones aside (journaled ``"p"``, a
FailureEvent with recovery action MANUAL that ``scrapy resilience show``
lists) and puts the suspects back one at a time, the likeliest culprit first,
so that the requests in flight beside a culprit by chance do not climb with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider

from scrapy_resilience import stats
from scrapy_resilience.checkpoint.ledger import Ledger
from scrapy_resilience.events.recorder import get_recorder
from scrapy_resilience.jobdir.resume import LoadedJob, Suspect
from scrapy_resilience.model.entities import FailureCategory, FailureSeverity, RecoveryAction

logger = logging.getLogger(__name__)

PATIENCE = 10.0  # seconds an idle spider waits for a suspect that never reached the engine


class SuspectProbe:
    """Owned by the checkpoint extension; ``start(job)`` once the job is loaded."""

    def __init__(self, crawler: Crawler, ledger: Ledger, restore: Callable[[dict[str, Any]], Request]) -> None:
        self.crawler = crawler
        self.ledger = ledger
        self.restore = restore  # a suspect's journal record → the request to crawl
        self._queue: list[Suspect] = []
        self._probing: str | None = None
        self._started = 0.0
        ledger.on_done = self._done
        crawler.signals.connect(self._idle, signal=signals.spider_idle)

    def start(self, job: LoadedJob) -> None:
        for suspect in job.poison:
            self._set_aside(suspect)
        self._queue = list(job.suspects)
        self._next()

    def _set_aside(self, suspect: Suspect) -> None:
        url = suspect.record["r"]["url"]
        self.ledger.append({"p": suspect.key})
        self.crawler.stats.inc_value(stats.POISON_SET_ASIDE)
        get_recorder(self.crawler).record(
            category=FailureCategory.APPLICATION, severity=FailureSeverity.HIGH,
            recovery_action=RecoveryAction.MANUAL, source="checkpoint",
            message=f"Poison request set aside: {url} was in flight each time the job died, "
                    f"{suspect.crashes} runs in a row",
            context={"url": url, "resilience_id": suspect.key, "crashes": suspect.crashes,
                     "request": suspect.record["r"]},
            correlation_id=suspect.key,
        )
        logger.error("Poison request %s set aside after %d crashes in a row", url, suspect.crashes)

    def _next(self) -> None:
        if self._probing is None and self._queue:
            suspect = self._queue.pop(0)
            self._probing, self._started = suspect.key, time.monotonic()
            self.crawler.engine.crawl(self.restore(suspect.record))

    def _done(self, keys: list[str]) -> None:
        # Called by the ledger after it journaled ``keys`` as done (or dropped,
        # or held): the next suspect starts only once this one is settled.
        if self._probing in keys:
            self._probing = None
            self._next()

    def _idle(self) -> None:
        if self._probing is None and not self._queue:
            return
        # The suspect being probed may have left the engine since the last
        # sweep: journal it as done now (the sweep then starts the next one).
        self.ledger.sweep()
        idle_for = time.monotonic() - self._started
        if self._probing is not None and not self.ledger.is_flying(self._probing) and idle_for > PATIENCE:
            # Idle, and the suspect never got into the engine: something ignored
            # it on the way (a middleware); do not keep the spider open for it.
            self._probing = None
            self._next()
        if self._probing is not None or self._queue:
            raise DontCloseSpider
