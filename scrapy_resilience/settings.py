"""Every setting of scrapy-resilience: its default, its type and its rule.

``DEFAULTS`` is the one place defaults are written. Components never call
``settings.get*`` on a ``RESILIENCE_*`` name themselves: they call ``read`` (one
value) or build a config object with ``from_settings``; both validate, so an
invalid value stops the crawl at start-up with a ``ConfigError`` naming the
setting, the value and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import attrs

from scrapy_resilience.exceptions import ConfigError
from scrapy_resilience.model import patterns
from scrapy_resilience.model.entities import (
    BASE_DELAY_RANGE,
    BROWSER_LIFETIME_RANGE,
    JITTER_RANGE,
    MAX_ATTEMPTS_RANGE,
    MULTIPLIER_RANGE,
    PERCENT_RANGE,
    AbortActionType,
)


@attrs.frozen
class Spec:
    """How one setting is read (``kind``) and which values it admits."""

    default: Any
    kind: str  # bool | int | float | str | int_list | str_list | dict
    allowed: str
    check: Callable[[Any], bool] = lambda value: True


def _between(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: low <= value <= high


def _off_or_between(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: value == 0 or low <= value <= high


def _at_least(low: float) -> Callable[[Any], bool]:
    return lambda value: value >= low


def _status_codes(codes: list[int]) -> bool:
    return all(100 <= code <= 599 for code in codes)


def _regexes(values: list[str]) -> bool:
    try:
        for value in values:
            re.compile(value)
    except re.error:
        return False
    return True


def _abort_actions(values: list[str]) -> bool:
    known = {action.value for action in AbortActionType}
    return all(value.lower() in known for value in values)


def _http_url(value: str | None) -> bool:
    if value is None:
        return True
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


_ACTIONS = ", ".join(action.value for action in AbortActionType)
_PERCENT_OR_OFF = "0 (off) or a percentage from 1 to 100"

SPECS: dict[str, Spec] = {
    # Enabling
    "RESILIENCE_ENABLED": Spec(True, "bool", "True or False"),
    "RESILIENCE_RETRY_ENABLED": Spec(True, "bool", "True or False"),
    "RESILIENCE_MONITOR_ENABLED": Spec(True, "bool", "True or False"),
    # Checkpoints
    "RESILIENCE_CHECKPOINT_DIR": Spec(None, "str", "a directory path, or unset"),
    "RESILIENCE_CHECKPOINT_INTERVAL": Spec(30.0, "float", "seconds from 1 to 86400", _between(1, 86400)),
    "RESILIENCE_CHECKPOINT_RETENTION": Spec(10, "int", "an integer of at least 1", _at_least(1)),
    "RESILIENCE_CHECKPOINT_COMPRESS": Spec(False, "bool", "True or False"),
    "RESILIENCE_JOB_ID": Spec(None, "str", "a job name, or unset for the spider's name"),
    "RESILIENCE_EVENT_RETENTION": Spec(1000, "int", "an integer of at least 1", _at_least(1)),
    "RESILIENCE_CHECKPOINT_SESSIONS": Spec(True, "bool", "True or False"),
    # Retry
    "RESILIENCE_RETRY_MAX_ATTEMPTS": Spec(8, "int", "an integer from 1 to 100", _between(*MAX_ATTEMPTS_RANGE)),
    "RESILIENCE_RETRY_BASE_DELAY": Spec(1.0, "float", "seconds from 0.1 to 60", _between(*BASE_DELAY_RANGE)),
    "RESILIENCE_RETRY_MULTIPLIER": Spec(2.0, "float", "a number from 1.0 to 10.0", _between(*MULTIPLIER_RANGE)),
    "RESILIENCE_RETRY_MAX_DELAY": Spec(60.0, "float", "seconds from 0.1 to 86400", _between(0.1, 86400)),
    "RESILIENCE_RETRY_JITTER": Spec(0.5, "float", "a number from 0.0 to 1.0", _between(*JITTER_RANGE)),
    "RESILIENCE_RETRY_AFTER_MAX": Spec(300.0, "float", "seconds from 0 to 86400", _between(0, 86400)),
    "RESILIENCE_RETRY_HTTP_CODES": Spec(
        [408, 429, 500, 502, 503, 504, 522, 524], "int_list", "a list of HTTP status codes (100-599)", _status_codes
    ),
    "RESILIENCE_NON_RETRYABLE_HTTP_CODES": Spec(
        [400, 401, 403, 404, 405, 410, 451], "int_list", "a list of HTTP status codes (100-599)", _status_codes
    ),
    "RESILIENCE_TRANSIENT_PATTERNS": Spec(
        patterns.TRANSIENT_PATTERNS, "str_list", "a list of valid regular expressions", _regexes
    ),
    "RESILIENCE_PERMANENT_PATTERNS": Spec(
        patterns.PERMANENT_PATTERNS, "str_list", "a list of valid regular expressions", _regexes
    ),
    "RESILIENCE_RETRY_POLICIES": Spec(
        {}, "dict", "a dict of policy name to a dict of max_attempts, base_delay, multiplier, max_delay, jitter_factor"
    ),
    # Monitor
    "RESILIENCE_MONITOR_INTERVAL": Spec(5.0, "float", "seconds from 0.1 to 3600", _between(0.1, 3600)),
    "RESILIENCE_MEMORY_MB": Spec(0, "int", "0 (off) or a positive number of MB", _at_least(0)),
    "RESILIENCE_MEMORY_PERCENT": Spec(0.0, "float", _PERCENT_OR_OFF, _off_or_between(*PERCENT_RANGE)),
    "RESILIENCE_CPU_PERCENT": Spec(0.0, "float", _PERCENT_OR_OFF, _off_or_between(*PERCENT_RANGE)),
    "RESILIENCE_DISK_SPACE_MB": Spec(0, "int", "0 (off) or a positive number of MB", _at_least(0)),
    "RESILIENCE_NETWORK_CONNECTIONS": Spec(0, "int", "0 (off) or a positive number of connections", _at_least(0)),
    "RESILIENCE_BROWSER_LIFETIME": Spec(
        0, "int", "0 (off) or seconds from 60 to 86400", _off_or_between(*BROWSER_LIFETIME_RANGE)
    ),
    # Abort policy
    "RESILIENCE_ABORT_FAILURE_RATE": Spec(0.0, "float", _PERCENT_OR_OFF, _off_or_between(*PERCENT_RANGE)),
    "RESILIENCE_ABORT_WINDOW_SIZE": Spec(100, "int", "an integer of at least 1", _at_least(1)),
    "RESILIENCE_ABORT_WINDOW_DURATION": Spec(300, "int", "seconds, an integer of at least 1", _at_least(1)),
    "RESILIENCE_ABORT_MIN_OPERATIONS": Spec(20, "int", "an integer of at least 1", _at_least(1)),
    "RESILIENCE_ABORT_CONSECUTIVE_CRASHES": Spec(0, "int", "0 (off) or a positive integer", _at_least(0)),
    "RESILIENCE_ABORT_ACTIONS": Spec(
        ["save_state", "log_event", "notify", "cleanup", "shutdown"],
        "str_list",
        f"a list of abort actions among: {_ACTIONS}",
        _abort_actions,
    ),
    "RESILIENCE_NOTIFY_URL": Spec(None, "str", "an http:// or https:// URL, or unset", _http_url),
    "RESILIENCE_ABORT_SHUTDOWN_TIMEOUT": Spec(600, "int", "whole seconds from 1 to 86400", _between(1, 86400)),
    # Many workers on scrapy-redis
    "RESILIENCE_REDIS_ENABLED": Spec(True, "bool", "True or False"),
    "RESILIENCE_REDIS_LEASE_TIMEOUT": Spec(30.0, "float", "seconds from 5 to 3600", _between(5, 3600)),
}

DEFAULTS: dict[str, Any] = {name: spec.default for name, spec in SPECS.items()}


def _get(settings: Any, name: str, kind: str) -> Any:
    """Read one raw value with Scrapy's typed getters (they parse ``-s`` strings)."""
    if kind == "bool":
        return settings.getbool(name)
    if kind == "int":
        value = settings.get(name)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return settings.getint(name)
    if kind == "float":
        return settings.getfloat(name)
    if kind == "int_list":
        return [int(code) for code in settings.getlist(name)]
    if kind == "str_list":
        return [str(item) for item in settings.getlist(name)]
    if kind == "dict":
        return dict(settings.getdict(name))
    value = settings.get(name)
    return None if value in (None, "") else str(value)


def read(settings: Any, name: str) -> Any:
    """Return the validated value of setting ``name`` (its default when unset)."""
    spec = SPECS[name]
    if settings.get(name) is None:
        return spec.default
    try:
        value = _get(settings, name, spec.kind)
    except (TypeError, ValueError):
        raise ConfigError(name, settings.get(name), spec.allowed) from None
    if not spec.check(value):
        raise ConfigError(name, settings.get(name), spec.allowed)
    return value


def validate_all(settings: Any) -> None:
    """Validate every ``RESILIENCE_*`` setting; raise on the first invalid one."""
    for name in SPECS:
        read(settings, name)
    retry_policies(settings)
    codes = set(read(settings, "RESILIENCE_RETRY_HTTP_CODES"))
    permanent = set(read(settings, "RESILIENCE_NON_RETRYABLE_HTTP_CODES"))
    if codes & permanent:
        raise ConfigError(
            "RESILIENCE_NON_RETRYABLE_HTTP_CODES",
            sorted(permanent),
            f"codes that are not also in RESILIENCE_RETRY_HTTP_CODES (both list {sorted(codes & permanent)})",
        )
    unknown = {name for name in settings.attributes if name.startswith("RESILIENCE_")} - set(SPECS)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(name, settings.get(name), "a known RESILIENCE_* setting (see docs/reference/settings.md)")


# A named retry policy's fields (the data model's RetryPolicy names), each
# validated by the RESILIENCE_RETRY_* setting that gives its default.
POLICY_SETTINGS = {
    "max_attempts": "RESILIENCE_RETRY_MAX_ATTEMPTS",
    "base_delay": "RESILIENCE_RETRY_BASE_DELAY",
    "multiplier": "RESILIENCE_RETRY_MULTIPLIER",
    "max_delay": "RESILIENCE_RETRY_MAX_DELAY",
    "jitter_factor": "RESILIENCE_RETRY_JITTER",
}


def retry_policies(settings: Any) -> dict[str, dict[str, float]]:
    """The named retry policies, each completed with the ``RESILIENCE_RETRY_*`` defaults."""
    name = "RESILIENCE_RETRY_POLICIES"
    base = {field: read(settings, setting) for field, setting in POLICY_SETTINGS.items()}
    policies: dict[str, dict[str, float]] = {}
    for policy_name, fields in read(settings, name).items():
        where = f"{name}[{policy_name!r}]"
        if not isinstance(fields, dict):
            raise ConfigError(where, fields, "a dict of " + ", ".join(POLICY_SETTINGS))
        policy = dict(base)
        for field, value in fields.items():
            if field not in POLICY_SETTINGS:
                raise ConfigError(f"{where}[{field!r}]", value, "one of the fields " + ", ".join(POLICY_SETTINGS))
            spec = SPECS[POLICY_SETTINGS[field]]
            integral = spec.kind == "int"
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (integral and not float(value).is_integer())
                or not spec.check(value)
            ):
                raise ConfigError(f"{where}[{field!r}]", value, spec.allowed)
            policy[field] = int(value) if integral else float(value)
        policies[str(policy_name)] = policy
    return policies


# Typed configuration, one object per component, built once in its __init__:
# each class maps its fields to the settings that fill them.


def _fields(settings: Any, names: dict[str, str]) -> dict[str, Any]:
    validate_all(settings)
    return {field: read(settings, name) for field, name in names.items()}


@attrs.frozen(kw_only=True)
class RetryConfig:
    enabled: bool
    max_attempts: int
    base_delay: float
    multiplier: float
    max_delay: float
    jitter_factor: float
    retry_after_max: float
    retry_http_codes: frozenset[int] = attrs.field(converter=frozenset)
    non_retryable_http_codes: frozenset[int] = attrs.field(converter=frozenset)
    transient_patterns: tuple[str, ...] = attrs.field(converter=tuple)
    permanent_patterns: tuple[str, ...] = attrs.field(converter=tuple)
    policies: dict[str, dict[str, float]]

    @classmethod
    def from_settings(cls, settings: Any) -> RetryConfig:
        values = _fields(
            settings,
            {
                **POLICY_SETTINGS,
                "retry_after_max": "RESILIENCE_RETRY_AFTER_MAX",
                "retry_http_codes": "RESILIENCE_RETRY_HTTP_CODES",
                "non_retryable_http_codes": "RESILIENCE_NON_RETRYABLE_HTTP_CODES",
                "transient_patterns": "RESILIENCE_TRANSIENT_PATTERNS",
                "permanent_patterns": "RESILIENCE_PERMANENT_PATTERNS",
            },
        )
        enabled = read(settings, "RESILIENCE_ENABLED") and read(settings, "RESILIENCE_RETRY_ENABLED")
        return cls(enabled=enabled, policies=retry_policies(settings), **values)


@attrs.frozen(kw_only=True)
class CheckpointConfig:
    enabled: bool
    directory: str | None
    interval: float
    retention: int
    compress: bool
    job_id: str | None
    event_retention: int
    sessions: bool

    @classmethod
    def from_settings(cls, settings: Any) -> CheckpointConfig:
        values = _fields(
            settings,
            {
                "directory": "RESILIENCE_CHECKPOINT_DIR",
                "interval": "RESILIENCE_CHECKPOINT_INTERVAL",
                "retention": "RESILIENCE_CHECKPOINT_RETENTION",
                "compress": "RESILIENCE_CHECKPOINT_COMPRESS",
                "job_id": "RESILIENCE_JOB_ID",
                "event_retention": "RESILIENCE_EVENT_RETENTION",
                "sessions": "RESILIENCE_CHECKPOINT_SESSIONS",
            },
        )
        enabled = read(settings, "RESILIENCE_ENABLED") and values["directory"] is not None
        return cls(enabled=enabled, **values)


@attrs.frozen(kw_only=True)
class MonitorConfig:
    enabled: bool
    interval: float
    memory_mb: int
    memory_percent: float
    cpu_percent: float
    disk_space_mb: int
    network_connections: int
    browser_lifetime: int
    checkpoint_dir: str | None

    @classmethod
    def from_settings(cls, settings: Any) -> MonitorConfig:
        values = _fields(
            settings,
            {
                "interval": "RESILIENCE_MONITOR_INTERVAL",
                "memory_mb": "RESILIENCE_MEMORY_MB",
                "memory_percent": "RESILIENCE_MEMORY_PERCENT",
                "cpu_percent": "RESILIENCE_CPU_PERCENT",
                "disk_space_mb": "RESILIENCE_DISK_SPACE_MB",
                "network_connections": "RESILIENCE_NETWORK_CONNECTIONS",
                "browser_lifetime": "RESILIENCE_BROWSER_LIFETIME",
                "checkpoint_dir": "RESILIENCE_CHECKPOINT_DIR",
            },
        )
        enabled = read(settings, "RESILIENCE_ENABLED") and read(settings, "RESILIENCE_MONITOR_ENABLED")
        return cls(enabled=enabled, **values)


@attrs.frozen(kw_only=True)
class AbortConfig:
    failure_rate: float
    window_size: int
    window_duration: int
    min_operations: int
    consecutive_crashes: int
    actions: tuple[AbortActionType, ...] = attrs.field(
        converter=lambda names: tuple(AbortActionType(name.lower()) for name in names)
    )
    notify_url: str | None
    shutdown_timeout: int

    @classmethod
    def from_settings(cls, settings: Any) -> AbortConfig:
        return cls(
            **_fields(
                settings,
                {
                    "failure_rate": "RESILIENCE_ABORT_FAILURE_RATE",
                    "window_size": "RESILIENCE_ABORT_WINDOW_SIZE",
                    "window_duration": "RESILIENCE_ABORT_WINDOW_DURATION",
                    "min_operations": "RESILIENCE_ABORT_MIN_OPERATIONS",
                    "consecutive_crashes": "RESILIENCE_ABORT_CONSECUTIVE_CRASHES",
                    "actions": "RESILIENCE_ABORT_ACTIONS",
                    "notify_url": "RESILIENCE_NOTIFY_URL",
                    "shutdown_timeout": "RESILIENCE_ABORT_SHUTDOWN_TIMEOUT",
                },
            )
        )
