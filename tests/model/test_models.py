"""The data model's entities: defaults, immutability, and every validation rule on both sides of its bound."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from scrapy_resilience.model import entities as models
from scrapy_resilience.model.entities import (
    AbortAction,
    AbortActionType,
    AbortPolicy,
    Checkpoint,
    CheckpointData,
    CheckpointMetadata,
    CheckpointStatus,
    ErrorRecord,
    FailureCategory,
    FailureClassifier,
    FailureEvent,
    FailureSeverity,
    ProgressState,
    RecoveryAction,
    ResourceSnapshot,
    ResourceThreshold,
    RetryPolicy,
)
from scrapy_resilience.model.validators import EARLIEST_TIMESTAMP

# The fields each entity requires; everything else has a default.
REQUIRED: dict[type, dict[str, Any]] = {
    Checkpoint: {"job_id": "books", "sequence_number": 1},
    CheckpointMetadata: {},
    CheckpointData: {},
    ProgressState: {},
    ResourceSnapshot: {},
    ErrorRecord: {"item_id": "https://example.com/", "error_type": "HttpError", "error_message": "404"},
    RetryPolicy: {"name": "default"},
    FailureClassifier: {},
    ResourceThreshold: {"name": "settings"},
    FailureEvent: {
        "severity": FailureSeverity.HIGH,
        "category": FailureCategory.NETWORK,
        "source": "retry",
        "message": "connection refused",
        "recovery_action": RecoveryAction.RETRY,
    },
    AbortPolicy: {"name": "settings"},
    AbortAction: {"action_type": AbortActionType.NOTIFY},
}


def make(cls: type, **fields: Any) -> Any:
    return cls(**{**REQUIRED[cls], **fields})


UUID = "6f1c2a4e-0b7d-4e8f-9a3c-2d5e6f708192"
NOW = datetime.now(timezone.utc)
BAD_UUIDS = ["", "not-a-uuid", UUID.upper(), UUID.replace("-", ""), "{" + UUID + "}", UUID[:-1], 42]
TIMESTAMP_OK = [EARLIEST_TIMESTAMP, NOW, NOW + timedelta(hours=23)]
TIMESTAMP_BAD = [
    EARLIEST_TIMESTAMP - timedelta(microseconds=1),
    NOW + timedelta(days=2),  # well past the skew however long after collection the test runs
    NOW.replace(tzinfo=None),  # naive
    NOW.astimezone(timezone(timedelta(hours=2))),  # aware but not UTC
    "2025-01-27T15:30:00Z",  # a string is not a datetime
]

# (entity, field, values that pass, values that fail): both sides of every bound.
RULES: list[tuple[type, str, list[Any], list[Any]]] = [
    (Checkpoint, "id", [UUID, str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000"], BAD_UUIDS),
    (Checkpoint, "job_id", ["books", "a"], ["", None]),
    (Checkpoint, "sequence_number", [1, 2, 2**40], [0, -1, True, 1.0, "1"]),
    (Checkpoint, "checksum", ["0" * 64, "a" * 64, "0123456789abcdef" * 4], ["A" * 64, "a" * 63, "a" * 65, "g" * 64]),
    (
        Checkpoint,
        "version",
        ["1.0.0", "0.9.0", "10.20.30", "1.0.0-rc.1+build.5"],
        ["1.0", "1", "01.0.0", "v1.0.0", "1.0.0.0", "", None],
    ),
    (Checkpoint, "timestamp", TIMESTAMP_OK, TIMESTAMP_BAD),
    (Checkpoint, "status", list(CheckpointStatus), ["completed", None]),
    (RetryPolicy, "max_attempts", [1, 2, 99, 100], [0, 101, -1, True, 1.5]),
    (RetryPolicy, "base_delay", [0.1, 1, 59.99, 60.0], [0.09, 60.01, 0, -1.0, True]),
    (RetryPolicy, "multiplier", [1.0, 10.0, 2], [0.99, 10.01, 0]),
    (RetryPolicy, "jitter_factor", [0.0, 0.5, 1.0], [-0.01, 1.01, math.nan]),
    (RetryPolicy, "max_delay", [1.0, 60.0, 86400.0], [0.99, 0.0, -1.0, math.inf, math.nan]),  # base_delay is 1.0
    (RetryPolicy, "name", ["slow-api"], [""]),
    (RetryPolicy, "id", ["default", UUID], [""]),
    (RetryPolicy, "created_at", TIMESTAMP_OK[:2], TIMESTAMP_BAD),
    (ResourceThreshold, "memory_percent", [None, 1, 1.0, 50.5, 100.0], [0, 0.99, 100.01, -5, True]),
    (ResourceThreshold, "cpu_percent", [None, 1.0, 100.0], [0, 0.99, 100.01]),
    (ResourceThreshold, "browser_lifetime", [None, 60, 3600, 86400], [0, 59, 86401, 60.0]),
    (ResourceThreshold, "memory_absolute", [None, 1, 2048], [0, -1, 1.5, True]),
    (ResourceThreshold, "disk_space", [None, 1, 500], [0, -1, 2.5]),
    (ResourceThreshold, "network_connections", [None, 1, 1000], [0, -3]),
    (ResourceThreshold, "name", ["memory"], [""]),
    (FailureEvent, "id", [UUID], BAD_UUIDS),
    (FailureEvent, "timestamp", TIMESTAMP_OK, TIMESTAMP_BAD),
    (FailureEvent, "severity", list(FailureSeverity), ["high", None]),
    (FailureEvent, "category", list(FailureCategory), ["network", 1]),
    (FailureEvent, "recovery_action", list(RecoveryAction), ["retry"]),
    (FailureEvent, "resolution_time", [None, 0, 0.0, 12.5], [-0.001, -1, math.nan, math.inf, True]),
    (FailureEvent, "source", ["retry"], [""]),
    (FailureClassifier, "transient_patterns", [(), ("timeout", r"net::ERR_\w+")], [("(",), ("a[",), (1,)]),
    (FailureClassifier, "permanent_patterns", [("DNS",)], [("*",)]),
    (FailureClassifier, "retryable_status_codes", [(100,), (599,), (429, 503)], [(99,), (600,), (True,), ("503",)]),
    (FailureClassifier, "non_retryable_status_codes", [(100, 404, 599)], [(99,), (600,)]),
    (AbortPolicy, "failure_rate_threshold", [None, 1.0, 50, 100.0], [0, 0.5, 100.5]),
    (AbortPolicy, "window_size", [1, 100], [0, -1]),
    (AbortPolicy, "window_duration", [1, 300], [0, 1.5]),
    (AbortPolicy, "consecutive_crashes", [None, 1, 3], [0, -1]),
    (AbortPolicy, "min_operations", [1, 20], [0]),
    (AbortPolicy, "abort_actions", [(), (AbortAction(action_type=AbortActionType.SHUTDOWN),)], [("shutdown",)]),
    (AbortAction, "action_type", list(AbortActionType), ["notify"]),
    (AbortAction, "timeout", [1, 30], [0, -1, 1.5]),
    (ProgressState, "completion_percentage", [0, 0.0, 100.0], [-0.01, 100.01]),
    (ProgressState, "total_count", [0, 10], [-1]),
    (ProgressState, "pending_items", [(), ["a", "b"]], [(1,), [None]]),
    (ResourceSnapshot, "memory_usage", [0, 512], [-1, 1.5]),
    (ResourceSnapshot, "cpu_usage", [0, 0.0, 250.0], [-0.1, math.inf]),
    (ResourceSnapshot, "disk_usage", [0], [-1]),
    (ResourceSnapshot, "network_connections", [0], [-1]),
    (ResourceSnapshot, "process_count", [0, 3], [-1]),
    (ResourceSnapshot, "timestamp", TIMESTAMP_OK, TIMESTAMP_BAD),
    (CheckpointMetadata, "total_items", [0, 10], [-1]),
    (CheckpointMetadata, "completed_items", [0], [-1]),
    (CheckpointMetadata, "failed_items", [0], [-1]),
    (CheckpointMetadata, "processing_time", [0.0, 12.5], [-0.5, math.nan]),
    (CheckpointMetadata, "browser_sessions", [(), ["ctx-1"]], [[1]]),
    (CheckpointData, "errors", [(), [make(ErrorRecord)]], [[{"item_id": "x"}]]),
    (ErrorRecord, "retry_count", [0, 5], [-1, 1.5]),
    (ErrorRecord, "timestamp", TIMESTAMP_OK, TIMESTAMP_BAD),
]


def _cases(valid: bool) -> list[Any]:
    return [
        pytest.param(cls, name, value, id=f"{cls.__name__}.{name}={value!r}")
        for cls, name, ok, bad in RULES
        for value in (ok if valid else bad)
    ]


@pytest.mark.parametrize(("cls", "name", "value"), _cases(valid=True))
def test_value_inside_the_rule_is_accepted(cls: type, name: str, value: Any) -> None:
    """A value on the allowed side of a rule (its bounds included) builds the entity."""
    assert make(cls, **{name: value}) is not None


@pytest.mark.parametrize(("cls", "name", "value"), _cases(valid=False))
def test_value_outside_the_rule_is_refused(cls: type, name: str, value: Any) -> None:
    """A value just outside a rule (or of the wrong type) is refused when the entity is built."""
    with pytest.raises((ValueError, TypeError)):
        make(cls, **{name: value})


def test_every_entity_and_field_of_the_data_model_exists() -> None:
    """Each entity of data-model.md exists with exactly the fields it lists."""
    expected = {
        Checkpoint: "id job_id timestamp sequence_number status metadata data checksum version",
        CheckpointMetadata: "total_items completed_items failed_items processing_time browser_sessions "
        "system_resources",
        CheckpointData: "job_state browser_state progress errors",
        RetryPolicy: "id name max_attempts base_delay multiplier max_delay jitter_factor failure_classifier "
        "created_at updated_at",
        FailureClassifier: "transient_patterns permanent_patterns retryable_status_codes non_retryable_status_codes",
        ResourceThreshold: "id name memory_percent memory_absolute cpu_percent browser_lifetime disk_space "
        "network_connections created_at is_active",
        FailureEvent: "id timestamp severity category source message context stack_trace recovery_action "
        "resolution_time correlation_id",
        AbortPolicy: "id name failure_rate_threshold window_size window_duration consecutive_crashes min_operations "
        "abort_actions created_at is_active",
        AbortAction: "action_type target parameters timeout",
        ProgressState: "current_item completed_items failed_items pending_items total_count completion_percentage",
        ResourceSnapshot: "timestamp memory_usage cpu_usage disk_usage network_connections process_count",
        ErrorRecord: "timestamp item_id error_type error_message retry_count resolved",
    }
    assert set(expected) == set(models.ENTITIES)
    for cls, names in expected.items():
        assert [field.name for field in attrs.fields(cls)] == names.split()


@pytest.mark.parametrize("cls", models.ENTITIES, ids=lambda cls: cls.__name__)
def test_entities_are_frozen(cls: type) -> None:
    """Entities are immutable; a change is a new entity made with attrs.evolve."""
    entity = make(cls)
    name = attrs.fields(cls)[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(entity, name, getattr(entity, name))


def test_defaults_are_fresh_ids_and_current_utc_times() -> None:
    """Ids default to a new canonical UUID each time, timestamps to the current UTC time."""
    first, second = make(Checkpoint), make(Checkpoint)
    assert first.id != second.id
    assert str(uuid.UUID(first.id)) == first.id
    assert first.timestamp.utcoffset() == timedelta(0)
    assert abs(first.timestamp - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert first.status is CheckpointStatus.COMPLETED
    assert first.checksum == models.PLACEHOLDER_CHECKSUM
    assert first.version == models.CHECKPOINT_SCHEMA_VERSION


def test_sequences_become_tuples() -> None:
    """Lists given for sequence fields are stored as tuples, so entities stay immutable and hashable."""
    progress = ProgressState(pending_items=["a", "b"])
    assert progress.pending_items == ("a", "b")
    classifier = FailureClassifier(retryable_status_codes=[503], transient_patterns=["timeout"])
    assert hash(classifier) == hash(FailureClassifier(retryable_status_codes=(503,), transient_patterns=("timeout",)))


def test_a_status_code_cannot_be_both_retryable_and_permanent() -> None:
    """A classifier listing one code as both retryable and non-retryable is refused."""
    with pytest.raises(ValueError, match=r"\[503\]"):
        FailureClassifier(retryable_status_codes=[429, 503], non_retryable_status_codes=[404, 503])


def test_retry_policy_update_cannot_precede_creation() -> None:
    """updated_at earlier than created_at is refused; equal is fine."""
    make(RetryPolicy, created_at=NOW, updated_at=NOW)
    with pytest.raises(ValueError, match="updated_at"):
        make(RetryPolicy, created_at=NOW, updated_at=NOW - timedelta(microseconds=1))


def test_settings_bounds_build_valid_entities() -> None:
    """The extreme values the settings admit build valid entities (the shared range constants agree)."""
    low, high = models.MAX_ATTEMPTS_RANGE, models.BASE_DELAY_RANGE
    make(RetryPolicy, max_attempts=low[0], base_delay=high[0], multiplier=models.MULTIPLIER_RANGE[0], max_delay=0.1)
    make(RetryPolicy, max_attempts=low[1], base_delay=high[1], multiplier=models.MULTIPLIER_RANGE[1], max_delay=86400)
    make(ResourceThreshold, browser_lifetime=models.BROWSER_LIFETIME_RANGE[0], memory_percent=models.PERCENT_RANGE[0])


def test_errors_name_the_field_the_rule_and_the_value() -> None:
    """A refused value's error names the field, what is allowed and the value given."""
    with pytest.raises(ValueError, match=r"max_attempts must be an integer from 1 to 100, got 101"):
        make(RetryPolicy, max_attempts=101)
    with pytest.raises(ValueError, match=r"browser_lifetime must be an integer from 60 to 86400, got 59"):
        make(ResourceThreshold, browser_lifetime=59)
