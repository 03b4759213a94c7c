"""The health of every site of a crawl: one circuit per download slot, one place for all.

``site_health(crawler)`` is the crawl's one ``SiteHealth``. It is fed the
outcome of every download attempt (by the retry middleware, which sees them
all, retried ones included) and read by:

* the retry middleware, before a request is sent (``admits``: a request of a
  slot that is paused or down waits outside the downloader, see
  ``retry.holding``) and after a failure (``down_for``: a request that failed
  because its whole site is down keeps its attempts);
* the abort judge (``observe``): once a probe has failed (the outage is
  confirmed), each failed probe costs every request waiting for the site a
  turn, and so does each request turned away meanwhile; the judge counts
  those lost turns as failed operations;
* whoever shares a site's pauses with other crawls (``observe_pauses``, and
  ``pause`` for a pause asked of another crawl: the workers of a scrapy-redis
  job, see ``redis.pauses``).

Whose fault is a failure? A failed attempt is *evidence* against the site
unless its request is known to fail on its own: a request is, once the site
has answered a request sent after this one first failed (its mark,
``meta.FAILED_SINCE_KEY``, is the time of that failure; an answer's send time
is its arrival less Scrapy's ``download_latency``). So a
handful of URLs that always fail never open the circuit however often they
are retried, while a site that dies fails fresh requests and their retries
alike.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.asyncio import CallLaterResult, call_later

from scrapy_resilience import stats
from scrapy_resilience.exceptions import SiteDownError
from scrapy_resilience.health.circuit import Circuit, Release, State
from scrapy_resilience.health.slotqueue import fail_queued
from scrapy_resilience.meta import FAILED_SINCE_KEY
from scrapy_resilience.settings import RetryConfig

logger = logging.getLogger(__name__)

# Probes of a site that is down come at most this many base delays apart
# (12 s by default): a 3-minute outage costs 17 probes (1, 2, 4, 8 s, then
# every 12 s) besides the requests in flight when it began, and the crawl is
# back to full speed within that long of the site's return (6 s on average).
PROBE_CEILING = 12.0

Observer = Callable[[str, int], None]
PauseObserver = Callable[[str, float], None]


class Parking(Protocol):
    """Where the requests of a slot that may not send wait (``retry.holding.HeldRequests``)."""

    def parked(self, slot: str) -> int: ...
    def release(self, slot: str, everyone: bool, prefer: Callable[[Request], bool]) -> int: ...


def is_failure(outcome: Response | BaseException, failure_codes: frozenset[int]) -> bool | None:
    """Whether a download outcome is a failure of the site; ``None`` when it is no outcome at all."""
    if isinstance(outcome, Response):
        return outcome.status in failure_codes
    if isinstance(outcome, IgnoreRequest):  # dropped on purpose (offsite, robots.txt, an abort)
        return None
    return True


class SiteHealth:
    """The circuits of a crawl's slots; see the module docstring."""

    def __init__(self, crawler: Crawler) -> None:
        config = RetryConfig.from_settings(crawler.settings)
        self.crawler = crawler
        self.failure_codes = config.retry_http_codes
        self.retry_after_max = config.retry_after_max
        self.probe_base = config.base_delay
        self.probe_max = max(config.base_delay, min(config.max_delay, PROBE_CEILING * config.base_delay))
        # A probe is a normal download: DOWNLOAD_TIMEOUT bounds it.
        self.probe_timeout = crawler.settings.getfloat("DOWNLOAD_TIMEOUT") + self.probe_max
        self.parking: Parking | None = None
        self._circuits: dict[str, Circuit] = {}
        self._timers: dict[str, CallLaterResult] = {}
        self._observers: list[Observer] = []
        self._pause_observers: list[PauseObserver] = []
        self._slowed_slots: set[str] = set()
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    # -- wiring ----------------------------------------------------------------

    def observe(self, observer: Observer) -> None:
        """Call ``observer(slot, count)`` for every ``count`` turns lost to a confirmed outage (the abort judge)."""
        self._observers.append(observer)

    def observe_pauses(self, observer: PauseObserver) -> None:
        """Call ``observer(slot, until)`` whenever a site asks this crawl to pause ``slot`` until ``until`` (epoch)."""
        self._pause_observers.append(observer)

    def slot(self, request: Request) -> str:
        engine = self.crawler.engine
        return engine.downloader.get_slot_key(request) if engine is not None else ""

    # -- reading -----------------------------------------------------------------

    def admits(self, request: Request) -> bool:
        """Whether ``request`` may be sent now; counts a probe and, if confirmed down, a refusal."""
        if not self._circuits:  # the common case, kept cheap: no site has failed yet
            return True
        slot = self.slot(request)
        circuit = self._circuits.get(slot)
        if circuit is None:
            return True
        was = circuit.state
        if circuit.admits(time.time()):
            if was is not State.CLOSED and circuit.state is State.HALF_OPEN:
                self._inc(stats.HEALTH_PROBES)
                self._schedule(slot, circuit)
            elif was is State.COOLING:
                # The pause is over and this request came before its timer:
                # the requests parked for the pause must go now, not wait for
                # a timer that would find the circuit closed and release nothing.
                self._pause_over(slot, circuit)
            return True
        if circuit.confirmed:
            self._notify(slot, 1)
        return False

    def not_before(self, request: Request) -> float:
        """When a request kept back now is expected to go (for the journal of held requests)."""
        circuit = self._circuits.get(self.slot(request))
        return circuit.until if circuit is not None else time.time()

    def holds_back(self, slot: str) -> bool:
        """Whether a request of ``slot`` arriving now would be kept back (the parking asks, see ``retry.holding``)."""
        circuit = self._circuits.get(slot)
        return circuit is not None and circuit.holds_back()

    def down_for(self, request: Request) -> bool:
        """Whether ``request`` just failed because its whole site is down (not through its own fault)."""
        circuit = self._circuits.get(self.slot(request))
        return circuit is not None and circuit.down and not self.suspect(request, circuit)

    def suspect(self, request: Request, circuit: Circuit | None = None) -> bool:
        """Whether ``request`` fails on its own (the site answered a request sent after its first failure)."""
        since = request.meta.get(FAILED_SINCE_KEY)
        if since is None:
            return False
        if circuit is None:
            circuit = self._circuits.get(self.slot(request))
        return circuit is not None and circuit.answered_sent_at > since

    def states(self) -> dict[str, str]:
        """Every slot that ever failed, with its state now."""
        return {slot: circuit.state.value for slot, circuit in sorted(self._circuits.items())}

    # -- feeding -------------------------------------------------------------------

    def answered(self, request: Request) -> None:
        """The site answered ``request`` (a response that is no failure): the success path, kept cheap."""
        if not self._circuits:
            return
        slot = self.slot(request)
        circuit = self._circuits.get(slot)
        # Scrapy's download handlers record how long the download took.
        sent_at = time.time() - request.meta.get("download_latency", 0.0)
        if circuit is not None and circuit.success(sent_at) is Release.ALL:
            logger.info("%(slot)s serves again: its waiting requests go", {"slot": slot})
            self._release(slot, circuit, Release.ALL)

    def outcome(self, request: Request, result: Response | BaseException, retry_after: float | None = None) -> None:
        """One attempt's outcome; ``retry_after``: the server's pause, in seconds, if it asked for one."""
        failed = is_failure(result, self.failure_codes)
        if failed is None:
            return
        if not failed:
            self.answered(request)
            return
        slot, now = self.slot(request), time.time()
        circuit = self._circuit(slot)
        was = circuit.state
        if retry_after is not None:
            seconds = min(retry_after, self.retry_after_max)
            self._retry_after(slot, circuit, now, seconds, "Retry-After")
            if seconds > 0:
                for observer in self._pause_observers:
                    observer(slot, now + seconds)
        evidence = not self.suspect(request, circuit)
        if FAILED_SINCE_KEY not in request.meta:
            request.meta[FAILED_SINCE_KEY] = now
        release = circuit.failure(now, evidence)
        if circuit.state is State.OPEN and was not in (State.OPEN, State.HALF_OPEN):
            self._slowed(
                slot, was, "%(slot)s is down: its requests wait, probed every %(delay).0fs at most", self.probe_max
            )
            self._inc(stats.HEALTH_OPENED)
            self._take_back_queued(slot)
        if was is State.HALF_OPEN and circuit.state is State.OPEN and self.parking is not None:
            # A failed probe confirms the outage: the turn of every request waiting for the site failed.
            self._notify(slot, self.parking.parked(slot) + 1)  # the probe itself waits again too
        self._release(slot, circuit, release)

    def pause(self, slot: str, seconds: float, source: str) -> None:
        """Pause ``slot`` for ``seconds`` as its ``Retry-After`` would; ``source``: who saw it (for the log)."""
        circuit = self._circuit(slot)
        self._retry_after(slot, circuit, time.time(), min(seconds, self.retry_after_max), source)
        self._schedule(slot, circuit)

    def _circuit(self, slot: str) -> Circuit:
        circuit = self._circuits.get(slot)
        if circuit is None:
            circuit = self._circuits[slot] = Circuit(self.probe_base, self.probe_max, self.probe_timeout)
        return circuit

    def _retry_after(self, slot: str, circuit: Circuit, now: float, seconds: float, source: str) -> None:
        was = circuit.state
        circuit.retry_after(now, seconds)
        if circuit.state is State.COOLING and circuit.until > now:
            self._slowed(slot, was, "Pausing %(slot)s for %(delay).2fs (%(source)s)", circuit.until - now, source)
            self._inc(stats.HEALTH_PAUSES)
            self._take_back_queued(slot)

    def _take_back_queued(self, slot: str) -> None:
        # Requests already past the middlewares wait in the slot's queue for a
        # transfer or the slot's delay: sent now, each would break the pause or
        # fail against the dead site. They go back (SiteDownError, parked by the
        # retry middleware) to wait with the others.
        engine = self.crawler.engine
        queued = engine.downloader.slots.get(slot) if engine is not None else None
        if queued is not None and (taken := fail_queued(queued, SiteDownError)):
            self._inc(stats.HEALTH_TAKEN_BACK, taken)

    # -- timers and releases ------------------------------------------------------------

    def _release(self, slot: str, circuit: Circuit, release: Release) -> None:
        if release is not Release.NOTHING and self.parking is not None:
            self.parking.release(slot, release is Release.ALL, lambda r: not self.suspect(r, circuit))
        self._schedule(slot, circuit)

    def _schedule(self, slot: str, circuit: Circuit) -> None:
        timer = self._timers.pop(slot, None)
        if timer is not None:
            timer.cancel()
        when = circuit.next_check()
        if when is not None:
            self._timers[slot] = call_later(max(0.0, when - time.time()), self._tick, slot)

    def _tick(self, slot: str) -> None:
        self._timers.pop(slot, None)
        circuit = self._circuits[slot]
        was = circuit.state
        release = circuit.tick(time.time())
        if was is State.COOLING and circuit.state is State.CLOSED:
            self._pause_over(slot, circuit)
        else:
            self._release(slot, circuit, release)

    def _pause_over(self, slot: str, circuit: Circuit) -> None:
        logger.info("Pause of %(slot)s over", {"slot": slot})
        self._release(slot, circuit, Release.ALL)

    def _slowed(self, slot: str, was: State, message: str, delay: float, source: str = "") -> None:
        # INFO once per episode: an outage must not flood the log.
        level = logging.INFO if was is State.CLOSED else logging.DEBUG
        logger.log(level, message, {"slot": slot, "delay": delay, "source": source})
        if slot not in self._slowed_slots:
            self._slowed_slots.add(slot)
            self._inc(stats.COOLDOWN_DOMAINS)

    def _notify(self, slot: str, count: int) -> None:
        for observer in self._observers:
            observer(slot, count)

    def _inc(self, key: str, count: int = 1) -> None:
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value(key, count)

    def _spider_closed(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


_boards: weakref.WeakKeyDictionary[Any, SiteHealth] = weakref.WeakKeyDictionary()


def site_health(crawler: Crawler) -> SiteHealth:
    """The crawler's SiteHealth, created on first use."""
    board = _boards.get(crawler)
    if board is None:
        board = _boards[crawler] = SiteHealth(crawler)
    return board
