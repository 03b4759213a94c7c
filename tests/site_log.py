"""Reading the demo site's request log: arrivals, answers and how many were open at once.

Every entry has ``t`` (arrival) and ``done`` (answer) on the site's clock, so
these helpers order events the site saw; they never compare with the test's
own clock.
"""

from __future__ import annotations

from typing import Any


def arrivals(log: list[dict[str, Any]], host: str | None = None, after: float = 0.0) -> list[dict[str, Any]]:
    """Entries (of ``host``, if given) that arrived at or after ``after``, in order of arrival."""
    chosen = [e for e in log if e["t"] >= after and (host is None or e["host"] == host)]
    return sorted(chosen, key=lambda e: e["t"])


def open_at(entries: list[dict[str, Any]], moment: float) -> int:
    """How many of ``entries`` were being served at ``moment`` (arrived, not yet answered)."""
    return sum(1 for e in entries if e["t"] <= moment < e.get("done", e["t"]))


def first_at_concurrency(entries: list[dict[str, Any]], concurrency: int) -> int | None:
    """Index (in arrival order) of the first entry whose arrival found ``concurrency`` open, itself included."""
    ordered = sorted(entries, key=lambda e: e["t"])
    for index, entry in enumerate(ordered):
        if open_at(ordered, entry["t"]) >= concurrency:
            return index
    return None


def max_concurrency(entries: list[dict[str, Any]]) -> int:
    """The most entries open at once."""
    return max((open_at(entries, e["t"]) for e in entries), default=0)
