"""The validation rules of the data model, as attrs validators.

``models.py`` attaches them to the entities' fields, so an invalid entity can
exist neither when code builds it nor when ``serialization`` structures it
from a file. Each error message names the field, the rule and the value.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

# A timestamp older than this, or more than a day ahead of the local clock, is a
# bug (an epoch of 0, milliseconds taken for seconds), not a real event. The day
# of slack tolerates clock skew between machines sharing a job directory.
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_CLOCK_SKEW = timedelta(days=1)


class InvalidField(ValueError):
    """A field value that breaks its rule; ``field`` names the field (for error paths)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field


SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# The official regular expression of semver.org (2.0.0).
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)


def canonical_uuid(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """A UUID in its canonical lowercase hyphenated form, so one id has one spelling."""
    try:
        canonical = str(uuid.UUID(value))
    except (TypeError, ValueError, AttributeError):
        canonical = None
    if canonical != value:
        raise InvalidField(attr.name, f"must be a UUID in canonical lowercase form, got {value!r}")


def utc_timestamp(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """A timezone-aware UTC datetime from 2000-01-01 to now + 1 day."""
    if not isinstance(value, datetime):
        raise InvalidField(attr.name, f"must be a datetime, got {value!r}")
    if value.utcoffset() != timedelta(0):
        raise InvalidField(attr.name, f"must be timezone-aware in UTC, got {value!r}")
    if not EARLIEST_TIMESTAMP <= value <= datetime.now(timezone.utc) + MAX_CLOCK_SKEW:
        raise InvalidField(attr.name, f"must be between 2000-01-01 and now + 1 day, got {value.isoformat()}")


def matches(pattern: re.Pattern[str], what: str) -> Validator:
    """A string that ``pattern`` matches entirely; ``what`` describes it in errors."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise InvalidField(attr.name, f"must be {what}, got {value!r}")

    return check


def between(low: float, high: float) -> Validator:
    """A number in ``[low, high]``; bool is refused although it is an int subclass."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InvalidField(attr.name, f"must be between {low} and {high}, got {value!r}")

    return check


def integer(low: int, high: int | None = None) -> Validator:
    """An int (not a bool) of at least ``low`` and, if given, at most ``high``."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            allowed = f"of at least {low}" if high is None else f"from {low} to {high}"
            raise InvalidField(attr.name, f"must be an integer {allowed}, got {value!r}")

    return check


def non_negative(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """A finite number of at least 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise InvalidField(attr.name, f"must be a non-negative number, got {value!r}")


def regexes(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """A sequence of strings that compile as regular expressions."""
    for pattern in value:
        if not isinstance(pattern, str):
            raise InvalidField(attr.name, f"must hold strings, got {pattern!r}")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidField(attr.name, f"holds an invalid regular expression {pattern!r}: {exc}") from None


def strings(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """A sequence of strings."""
    for item in value:
        if not isinstance(item, str):
            raise InvalidField(attr.name, f"must hold strings, got {item!r}")


def status_codes(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """A sequence of HTTP status codes (100-599)."""
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise InvalidField(attr.name, f"must hold HTTP status codes (100-599), got {code!r}")


def non_empty(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise InvalidField(attr.name, f"must be a non-empty string, got {value!r}")
