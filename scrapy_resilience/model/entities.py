"""The data model of scrapy-resilience (``shared/seed/data-model.md``).

Plain attrs classes: no Scrapy, no cattrs. Serialization lives in
``scrapy_resilience.model.serialization``; Scrapy objects are converted at the edge.
Every entity validates on construction with the rules of ``validators``, so
an invalid one can be neither built by code nor loaded from a file. Entities
are frozen: change one with ``attrs.evolve``. Sequences are tuples (lists are
converted) and ``dict[str, Any]`` fields hold JSON values only.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import attrs

from scrapy_resilience.model import validators as v

# Numeric ranges of the data model's validation rules, shared with the settings
# module so that a setting and the entity it fills can never disagree.
MAX_ATTEMPTS_RANGE = (1, 100)
BASE_DELAY_RANGE = (0.1, 60.0)
MULTIPLIER_RANGE = (1.0, 10.0)
JITTER_RANGE = (0.0, 1.0)
PERCENT_RANGE = (1.0, 100.0)
BROWSER_LIFETIME_RANGE = (60, 86400)


class CheckpointStatus(enum.Enum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CORRUPTED = "corrupted"
    EXPIRED = "expired"


class FailureSeverity(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class FailureCategory(enum.Enum):
    NETWORK = "network"
    BROWSER = "browser"
    SYSTEM = "system"
    APPLICATION = "application"
    EXTERNAL = "external"


class RecoveryAction(enum.Enum):
    RETRY = "retry"
    RESTART = "restart"
    SKIP = "skip"
    ABORT = "abort"
    MANUAL = "manual"


class AbortActionType(enum.Enum):
    SHUTDOWN = "shutdown"
    NOTIFY = "notify"
    CLEANUP = "cleanup"
    SAVE_STATE = "save_state"
    LOG_EVENT = "log_event"


CHECKPOINT_SCHEMA_VERSION = "1.0.0"  # the schema a Checkpoint is written with (see serialization)
PLACEHOLDER_CHECKSUM = "0" * 64  # a well-formed checksum for a checkpoint not yet sealed


def new_id() -> str:
    """A fresh identifier: a random UUID in its canonical lowercase form."""
    return str(uuid.uuid4())


# Typed ``tuple`` converters: attrs' mypy plugin types a field's __init__
# parameter from its converter, and neither ``tuple`` nor a generic one will do.
def _strs(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _ints(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


def _records(values: Iterable[ErrorRecord]) -> tuple[ErrorRecord, ...]:
    return tuple(values)


def _actions(values: Iterable[AbortAction]) -> tuple[AbortAction, ...]:
    return tuple(values)


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (the only kind the model admits)."""
    return datetime.now(timezone.utc)


_deep_instances = attrs.validators.deep_iterable
_optional = attrs.validators.optional


@attrs.frozen(kw_only=True)
class ResourceSnapshot:
    """Resource usage of the crawl's process tree at one instant (MB and percent)."""

    timestamp: datetime = attrs.field(factory=utc_now, validator=v.utc_timestamp)
    memory_usage: int = attrs.field(default=0, validator=v.integer(0))
    cpu_usage: float = attrs.field(default=0.0, validator=v.non_negative)  # above 100 on several cores
    disk_usage: int = attrs.field(default=0, validator=v.integer(0))
    network_connections: int = attrs.field(default=0, validator=v.integer(0))
    process_count: int = attrs.field(default=0, validator=v.integer(0))


@attrs.frozen(kw_only=True)
class ErrorRecord:
    """One error since the previous checkpoint, attached to the item (request) it hit."""

    timestamp: datetime = attrs.field(factory=utc_now, validator=v.utc_timestamp)
    item_id: str
    error_type: str
    error_message: str
    retry_count: int = attrs.field(default=0, validator=v.integer(0))
    resolved: bool = False


@attrs.frozen(kw_only=True)
class ProgressState:
    """Progress of the job.

    The item lists are a bounded *sample* when the checkpoint extension writes
    them: a manifest must stay under 1 MB however big the crawl, so the complete
    frontier (pending requests, seen fingerprints) lives in sidecar files whose
    checksums the manifest records. ``total_count`` and
    ``completion_percentage`` are exact.
    """

    current_item: str = ""
    completed_items: tuple[str, ...] = attrs.field(default=(), converter=_strs, validator=v.strings)
    failed_items: tuple[str, ...] = attrs.field(default=(), converter=_strs, validator=v.strings)
    pending_items: tuple[str, ...] = attrs.field(default=(), converter=_strs, validator=v.strings)
    total_count: int = attrs.field(default=0, validator=v.integer(0))
    completion_percentage: float = attrs.field(default=0.0, validator=v.between(0.0, 100.0))


@attrs.frozen(kw_only=True)
class CheckpointMetadata:
    """Counters and resources of the job at the checkpoint."""

    total_items: int = attrs.field(default=0, validator=v.integer(0))
    completed_items: int = attrs.field(default=0, validator=v.integer(0))
    failed_items: int = attrs.field(default=0, validator=v.integer(0))
    processing_time: float = attrs.field(default=0.0, validator=v.non_negative)
    browser_sessions: tuple[str, ...] = attrs.field(default=(), converter=_strs, validator=v.strings)
    system_resources: ResourceSnapshot = attrs.field(factory=ResourceSnapshot)


@attrs.frozen(kw_only=True)
class CheckpointData:
    """The state itself: JSON values, plus the bounded progress and the recent errors."""

    job_state: dict[str, Any] = attrs.field(factory=dict)
    browser_state: dict[str, Any] = attrs.field(factory=dict)
    progress: ProgressState = attrs.field(factory=ProgressState)
    errors: tuple[ErrorRecord, ...] = attrs.field(
        default=(), converter=_records, validator=_deep_instances(attrs.validators.instance_of(ErrorRecord))
    )


@attrs.frozen(kw_only=True)
class Checkpoint:
    """A saved state of a job.

    ``serialization.seal`` sets ``checksum``; until then it may hold
    ``PLACEHOLDER_CHECKSUM``. ``status`` is what the file says; the in-process
    lifecycle (``lifecycle.CheckpointLifecycle``) maps onto it.
    """

    id: str = attrs.field(factory=new_id, validator=v.canonical_uuid)
    job_id: str = attrs.field(validator=v.non_empty)
    timestamp: datetime = attrs.field(factory=utc_now, validator=v.utc_timestamp)
    sequence_number: int = attrs.field(validator=v.integer(1))
    status: CheckpointStatus = attrs.field(
        default=CheckpointStatus.COMPLETED, validator=attrs.validators.instance_of(CheckpointStatus)
    )
    metadata: CheckpointMetadata = attrs.field(factory=CheckpointMetadata)
    data: CheckpointData = attrs.field(factory=CheckpointData)
    checksum: str = attrs.field(default=PLACEHOLDER_CHECKSUM, validator=v.matches(v.SHA256_HEX, "a SHA-256 hex digest"))
    version: str = attrs.field(default=CHECKPOINT_SCHEMA_VERSION, validator=v.matches(v.SEMVER, "a semantic version"))


@attrs.frozen(kw_only=True)
class FailureClassifier:
    """Which failures are transient (retried) and which permanent (not retried)."""

    transient_patterns: tuple[str, ...] = attrs.field(default=(), converter=_strs, validator=v.regexes)
    permanent_patterns: tuple[str, ...] = attrs.field(default=(), converter=_strs, validator=v.regexes)
    retryable_status_codes: tuple[int, ...] = attrs.field(default=(), converter=_ints, validator=v.status_codes)
    non_retryable_status_codes: tuple[int, ...] = attrs.field(default=(), converter=_ints, validator=v.status_codes)

    def __attrs_post_init__(self) -> None:
        both = set(self.retryable_status_codes) & set(self.non_retryable_status_codes)
        if both:
            raise ValueError(f"status codes cannot be both retryable and non-retryable: {sorted(both)}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Retry behaviour: attempts (the first included) and exponential backoff with jitter."""

    id: str = attrs.field(factory=new_id, validator=v.non_empty)
    name: str = attrs.field(validator=v.non_empty)
    max_attempts: int = attrs.field(default=8, validator=v.integer(*MAX_ATTEMPTS_RANGE))
    base_delay: float = attrs.field(default=1.0, validator=v.between(*BASE_DELAY_RANGE))
    multiplier: float = attrs.field(default=2.0, validator=v.between(*MULTIPLIER_RANGE))
    max_delay: float = attrs.field(default=60.0, validator=v.non_negative)
    jitter_factor: float = attrs.field(default=0.5, validator=v.between(*JITTER_RANGE))
    failure_classifier: FailureClassifier = attrs.field(factory=FailureClassifier)
    created_at: datetime = attrs.field(factory=utc_now, validator=v.utc_timestamp)
    updated_at: datetime = attrs.field(factory=utc_now, validator=v.utc_timestamp)

    def __attrs_post_init__(self) -> None:
        # A cap below the first delay would silently replace the whole schedule.
        if self.max_delay < self.base_delay:
            raise ValueError(f"max_delay ({self.max_delay}) must be at least base_delay ({self.base_delay})")
        if self.updated_at < self.created_at:
            raise ValueError("updated_at must not be earlier than created_at")


@attrs.frozen(kw_only=True)
class ResourceThreshold:
    """Resource limits. ``None`` turns one limit off (the settings write 0 for off)."""

    id: str = attrs.field(factory=new_id, validator=v.non_empty)
    name: str = attrs.field(validator=v.non_empty)
    memory_percent: float | None = attrs.field(default=None, validator=_optional(v.between(*PERCENT_RANGE)))
    memory_absolute: int | None = attrs.field(default=None, validator=_optional(v.integer(1)))  # MB
    cpu_percent: float | None = attrs.field(default=None, validator=_optional(v.between(*PERCENT_RANGE)))
    browser_lifetime: int | None = attrs.field(default=None, validator=_optional(v.integer(*BROWSER_LIFETIME_RANGE)))
    disk_space: int | None = attrs.field(default=None, validator=_optional(v.integer(1)))  # MB free, at least
    network_connections: int | None = attrs.field(default=None, validator=_optional(v.integer(1)))
    created_at: datetime = attrs.field(factory=utc_now, validator=v.utc_timestamp)
    is_active: bool = True


@attrs.frozen(kw_only=True)
class FailureEvent:
    """One failure: what, where, how bad, and what was done about it.

    ``resolution_time`` (seconds) is ``None`` while the failure is unresolved.
    """

    id: str = attrs.field(factory=new_id, validator=v.canonical_uuid)
    timestamp: datetime = attrs.field(factory=utc_now, validator=v.utc_timestamp)
    severity: FailureSeverity = attrs.field(validator=attrs.validators.instance_of(FailureSeverity))
    category: FailureCategory = attrs.field(validator=attrs.validators.instance_of(FailureCategory))
    source: str = attrs.field(validator=v.non_empty)
    message: str
    context: dict[str, Any] = attrs.field(factory=dict)
    stack_trace: str = ""
    recovery_action: RecoveryAction = attrs.field(validator=attrs.validators.instance_of(RecoveryAction))
    resolution_time: float | None = attrs.field(default=None, validator=_optional(v.non_negative))
    correlation_id: str = ""


@attrs.frozen(kw_only=True)
class AbortAction:
    """One step of an abort, run in order with its own timeout (seconds)."""

    action_type: AbortActionType = attrs.field(validator=attrs.validators.instance_of(AbortActionType))
    target: str = ""
    parameters: dict[str, Any] = attrs.field(factory=dict)
    timeout: int = attrs.field(default=30, validator=v.integer(1))


@attrs.frozen(kw_only=True)
class AbortPolicy:
    """When to abort a job, judged over a sliding window. ``None`` turns a trigger off."""

    id: str = attrs.field(factory=new_id, validator=v.non_empty)
    name: str = attrs.field(validator=v.non_empty)
    failure_rate_threshold: float | None = attrs.field(default=None, validator=_optional(v.between(*PERCENT_RANGE)))
    window_size: int = attrs.field(default=100, validator=v.integer(1))
    window_duration: int = attrs.field(default=300, validator=v.integer(1))
    consecutive_crashes: int | None = attrs.field(default=None, validator=_optional(v.integer(1)))
    min_operations: int = attrs.field(default=20, validator=v.integer(1))
    abort_actions: tuple[AbortAction, ...] = attrs.field(
        default=(), converter=_actions, validator=_deep_instances(attrs.validators.instance_of(AbortAction))
    )
    created_at: datetime = attrs.field(factory=utc_now, validator=v.utc_timestamp)
    is_active: bool = True


# Every entity of the data model, for code that must treat them all alike.
ENTITIES: tuple[type, ...] = (
    Checkpoint,
    CheckpointMetadata,
    CheckpointData,
    ProgressState,
    ResourceSnapshot,
    ErrorRecord,
    RetryPolicy,
    FailureClassifier,
    ResourceThreshold,
    FailureEvent,
    AbortPolicy,
    AbortAction,
)
