"""One site's circuit: closed, cooling, open, half-open (pure: no Scrapy, no clock of its own).

A circuit judges one download slot (a domain, by default) from the outcome of
every attempt sent to it, retried ones included:

* **closed**: the site serves; every request goes.
* **cooling**: the site answered with a ``Retry-After``; no request goes until
  that moment (``until``), then the circuit closes again by itself. The pause
  is taken once: the slot's pace afterwards is what it was before.
* **open**: ``TRIP`` failures in a row that are the site's fault (the caller
  says which: see ``board``), with no answer in between: the site is down.
  Nothing goes until ``until``, when one request is let through as a probe.
* **half-open**: that probe is on its way. An answer from the site closes the
  circuit (every waiting request goes at once: full speed again); a failure
  opens it again for twice as long (``probe_base`` doubling up to
  ``probe_max``, no jitter: one client probing one site has no one to collide
  with) and *confirms* the outage. A probe that never comes back within
  ``probe_timeout`` is replaced by another.

Times are epoch seconds from the caller (``time.time()``), the clock the
held requests' ``not_before`` and the journal use.
"""

from __future__ import annotations

import enum
import math

import attrs

# Failures in a row, each the site's fault, that open a circuit. Twelve: a
# healthy site whose pages fail now and then at random (even 30 % of them)
# almost never produces twelve in a row (0.3**12 = 5e-7 per attempt), while a
# site that went down fails every request in flight at once (Scrapy's
# defaults put 16 in flight, 8 of them transferring, on one domain).
TRIP = 12


class State(enum.Enum):
    CLOSED = "closed"
    COOLING = "cooling"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Release(enum.Enum):
    """What the board should do with the slot's waiting requests after a ``tick`` or an outcome."""

    NOTHING = 0
    ONE = 1  # let one through: the probe
    ALL = 2  # the site serves again: let everything through


@attrs.define
class Circuit:
    """The state of one slot; see the module docstring."""

    probe_base: float
    probe_max: float
    probe_timeout: float
    state: State = State.CLOSED
    until: float = 0.0  # cooling: end of the pause; open: time of the next probe
    streak: int = 0  # failures in a row that are the site's fault
    streak_began: float = 0.0  # when the first of them failed
    opened_at: float = 0.0  # when the circuit last opened
    answered_sent_at: float = -math.inf  # the latest send time of a request the site answered
    failed_probes: int = 0  # probes failed in a row: the interval doubles with each
    confirmed: bool = False  # a probe failed since the circuit opened: the site is down for sure
    probe_sent_at: float | None = None  # half-open: when the probe went

    @property
    def down(self) -> bool:
        """Whether the site is judged down (open or half-open)."""
        return self.state in (State.OPEN, State.HALF_OPEN)

    def interval(self) -> float:
        return min(self.probe_max, self.probe_base * 2.0**self.failed_probes)

    def admits(self, now: float) -> bool:
        """Whether a request may be sent now (the first one after the probe time becomes the probe)."""
        if self.state is State.CLOSED:
            return True
        if self.state is State.COOLING:
            if now < self.until:
                return False
            self.state = State.CLOSED
            return True
        if self.state is State.OPEN:
            if now < self.until:
                return False
            self.state = State.HALF_OPEN
            self.probe_sent_at = None
        if self.probe_sent_at is None:
            self.probe_sent_at = now
            return True
        return False

    def success(self, sent_at: float) -> Release:
        """The site answered (any status that is not a failure) a request sent at ``sent_at``.

        An answer to a request sent before the circuit opened (one in flight
        when the site went down) says nothing about the site now: it does not
        close the circuit (nor, half way to opening, break the run of failures).
        """
        self.answered_sent_at = max(self.answered_sent_at, sent_at)
        if self.down and sent_at < self.opened_at:
            return Release.NOTHING
        if self.streak >= TRIP // 2 and sent_at < self.streak_began:
            # Half way to opening, pages sent before the run began (in flight
            # when the site went down) no longer break it: they would let a
            # burst of requests fail before the circuit opens.
            return Release.NOTHING
        self.streak = 0
        if self.down:
            self.state = State.CLOSED
            self.failed_probes = 0
            self.confirmed = False
            self.probe_sent_at = None
            return Release.ALL
        return Release.NOTHING

    def failure(self, now: float, evidence: bool) -> Release:
        """A failed attempt; ``evidence``: it is the site's fault, not this one URL's."""
        if self.state is State.HALF_OPEN and not evidence:
            # A URL known to fail on its own says nothing about the site: another
            # request probes, after the same interval (never a burst of probes).
            self.state = State.OPEN
            self.until = now + self.interval()
            self.probe_sent_at = None
            return Release.NOTHING
        if not evidence:
            return Release.NOTHING
        self.streak += 1
        if self.streak == 1:
            self.streak_began = now
        if self.state is State.HALF_OPEN:
            self.failed_probes += 1
            self.confirmed = True
            self._open(now)
        elif self.state is not State.OPEN and self.streak >= TRIP:
            self._open(now)
        return Release.NOTHING

    def retry_after(self, now: float, seconds: float) -> None:
        """The site asked for a pause of ``seconds`` (already capped)."""
        end = now + seconds
        if self.state is State.CLOSED or (self.state is State.COOLING and end > self.until):
            self.state = State.COOLING
            self.until = end
        elif self.down:  # the next probe waits for it too (``_open`` keeps the later time)
            self.until = max(self.until, end)

    def tick(self, now: float) -> Release:
        """The time ``next_check()`` asked for has come."""
        if self.state is State.COOLING and now >= self.until:
            self.state = State.CLOSED
            return Release.ALL
        if self.state is State.OPEN and now >= self.until:
            return Release.ONE
        lost = self.probe_sent_at is not None and now >= self.probe_sent_at + self.probe_timeout
        if self.state is State.HALF_OPEN and lost:
            self.probe_sent_at = None  # lost: another request probes
            return Release.ONE
        return Release.NOTHING

    def holds_back(self) -> bool:
        """Whether a request arriving now would be kept back (``admits`` without its side effects)."""
        if self.state is State.HALF_OPEN:
            return self.probe_sent_at is not None
        return self.state is not State.CLOSED

    def next_check(self) -> float | None:
        """When ``tick`` should be called next (``None``: nothing is due)."""
        if self.state in (State.COOLING, State.OPEN):
            return self.until
        if self.state is State.HALF_OPEN and self.probe_sent_at is not None:
            return self.probe_sent_at + self.probe_timeout
        return None

    def _open(self, now: float) -> None:
        self.state = State.OPEN
        self.opened_at = now
        self.until = max(self.until, now + self.interval())
        self.probe_sent_at = None
