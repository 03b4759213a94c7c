"""Per-domain cooldown: slow a struggling host down, not just the one request.

Owned by the retry middleware. It works on the download slot, the way
AutoThrottle does (``crawler.engine.downloader.slots[key].delay``), so a
domain that is cooling down sends fewer requests per second while every other
slot keeps its own delay and concurrency.

- A 429 or 503 with a ``Retry-After`` sets the slot's delay to that value
  (capped by ``RESILIENCE_RETRY_AFTER_MAX``): the server told us how long it
  wants to be left alone, and every request to it, not just this one, should
  listen.
- A run of ``FAILURE_RUN`` transient failures in a row from one slot raises its
  delay to ``base_delay``, then doubles it on every further failure, up to
  ``RUN_CEILING`` base delays or ``max_delay``, whichever is lower (Nutch and
  Crawlee treat hosts the same way).
- Each successful response halves the extra delay, back to the slot's own delay
  at most: the slowdown lifts gradually as successes return. Error responses
  never shorten a delay (AutoThrottle's rule: small error pages look fast and
  would otherwise speed the crawl up against a failing host).
"""

from __future__ import annotations

import logging

import attrs
from scrapy import Request
from scrapy.core.downloader import Downloader, Slot
from scrapy.statscollectors import StatsCollector

from scrapy_resilience import stats

logger = logging.getLogger(__name__)

# Consecutive transient failures of one slot before the whole slot slows down:
# one or two can be bad luck on a healthy host, three in a row rarely are.
FAILURE_RUN = 3
# A run of failures slows a slot to at most this many base delays (8 s by
# default): enough to stop hammering a host that is down, little enough to see
# soon that it is back (a success then halves the delay, one step at a time).
RUN_CEILING = 8.0


@attrs.define
class _SlotState:
    normal_delay: float  # the slot's delay before we touched it
    failures: int = 0  # consecutive transient failures
    cooling: bool = False


class DomainCooldown:
    """Raises and lowers download-slot delays; see the module docstring."""

    def __init__(
        self, stats_collector: StatsCollector | None, *, base_delay: float, max_delay: float, retry_after_max: float
    ) -> None:
        self.stats = stats_collector
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retry_after_max = retry_after_max
        self._states: dict[str, _SlotState] = {}

    @staticmethod
    def _slot(downloader: Downloader, request: Request) -> tuple[str, Slot | None]:
        key = downloader.get_slot_key(request)
        return key, downloader.slots.get(key)

    def _state(self, key: str, slot: Slot) -> _SlotState:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _SlotState(normal_delay=slot.delay)
        return state

    def failure(self, downloader: Downloader, request: Request, retry_after: float | None) -> None:
        """A transient failure from ``request``'s slot, with the server's Retry-After if any."""
        key, slot = self._slot(downloader, request)
        if slot is None:
            return
        state = self._state(key, slot)
        state.failures += 1
        if retry_after is not None:
            self._raise(key, slot, state, min(retry_after, self.retry_after_max), "Retry-After")
        elif state.failures >= FAILURE_RUN:
            grown = self.base_delay * 2.0 ** (state.failures - FAILURE_RUN)
            ceiling = min(self.max_delay, RUN_CEILING * self.base_delay)
            self._raise(key, slot, state, min(grown, ceiling), f"{state.failures} failures in a row")

    def _raise(self, key: str, slot: Slot, state: _SlotState, delay: float, why: str) -> None:
        if delay <= slot.delay:
            return
        # INFO once per cooldown, DEBUG for each further step: an outage must not flood the log.
        level = logging.DEBUG
        if not state.cooling:
            state.normal_delay = slot.delay
            state.cooling = True
            level = logging.INFO
            if self.stats is not None:
                self.stats.inc_value(stats.COOLDOWN_DOMAINS)
        details = {"slot": key, "delay": delay, "why": why}
        logger.log(level, "Cooling down %(slot)s: delay %(delay).2fs (%(why)s)", details)
        slot.delay = delay

    def success(self, downloader: Downloader, request: Request) -> None:
        """A successful response from ``request``'s slot: lift the slowdown by half a step."""
        if not self._states:  # the common case, kept cheap: no slot has ever failed
            return
        key, slot = self._slot(downloader, request)
        state = self._states.get(key)
        if state is None:
            return
        state.failures = 0
        if slot is None or not state.cooling:
            return
        lowered = max(state.normal_delay, slot.delay / 2.0)
        # Below base_delay the remaining slowdown is noise: end the cooldown.
        if lowered - state.normal_delay < self.base_delay / 2.0:
            lowered = state.normal_delay
            state.cooling = False
            logger.info("Cooldown of %(slot)s lifted", {"slot": key})
        slot.delay = lowered

    def cooling(self) -> list[str]:
        """The slot keys slowed down right now."""
        return sorted(key for key, state in self._states.items() if state.cooling)
