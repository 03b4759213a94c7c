"""The converter, the canonical form and its checksum, schema versions and migration, event lines."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrapy_resilience.exceptions import CheckpointCorruptedError, SchemaVersionError
from scrapy_resilience.model import entities as models
from scrapy_resilience.model import serialization
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
from scrapy_resilience.model.serialization import (
    canonical_bytes,
    checkpoint_from_document,
    checkpoint_to_document,
    compute_checksum,
    event_from_line,
    event_to_line,
    seal,
    structure,
    unstructure,
)

V0_FILE = Path(__file__).parent / "data" / "checkpoint-v0.json"
CHECKPOINT_FORMAT_PAGE = Path(__file__).parents[2] / "docs" / "reference" / "checkpoint-format.md"

# --- strategies: one per entity, every field drawn over its whole valid range ---

LATEST = datetime.now(timezone.utc).replace(tzinfo=None)  # hypothesis bounds are naive; the zone is UTC
timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=LATEST, timezones=st.just(timezone.utc))
uuids = st.uuids().map(str)
names = st.text(min_size=1, max_size=20)
texts = st.text(max_size=30)
counts = st.integers(min_value=0, max_value=2**53)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)
seconds = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
string_lists = st.lists(texts, max_size=4)


def percent(low: float = 1.0) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=100.0)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


snapshots = st.builds(
    ResourceSnapshot,
    timestamp=timestamps,
    memory_usage=counts,
    cpu_usage=st.floats(min_value=0, max_value=6400),
    disk_usage=counts,
    network_connections=counts,
    process_count=counts,
)
error_records = st.builds(
    ErrorRecord,
    timestamp=timestamps,
    item_id=texts,
    error_type=texts,
    error_message=texts,
    retry_count=counts,
    resolved=st.booleans(),
)
progress_states = st.builds(
    ProgressState,
    current_item=texts,
    completed_items=string_lists,
    failed_items=string_lists,
    pending_items=string_lists,
    total_count=counts,
    completion_percentage=percent(0.0),
)
checkpoint_metadata = st.builds(
    CheckpointMetadata,
    total_items=counts,
    completed_items=counts,
    failed_items=counts,
    processing_time=seconds,
    browser_sessions=string_lists,
    system_resources=snapshots,
)
checkpoint_data = st.builds(
    CheckpointData,
    job_state=json_objects,
    browser_state=json_objects,
    progress=progress_states,
    errors=st.lists(error_records, max_size=3),
)
versions_1 = st.tuples(st.integers(0, 30), st.integers(0, 30)).map(lambda mp: f"1.{mp[0]}.{mp[1]}")
checkpoints = st.builds(
    Checkpoint,
    id=uuids,
    job_id=names,
    timestamp=timestamps,
    sequence_number=st.integers(min_value=1, max_value=2**53),
    status=st.sampled_from(CheckpointStatus),
    metadata=checkpoint_metadata,
    data=checkpoint_data,
    checksum=st.text("0123456789abcdef", min_size=64, max_size=64),
    version=versions_1,
)
patterns = st.lists(st.sampled_from([r"(?i)timeout", r"net::ERR_\w+", "DNS", r"^\d+$", "é"]), max_size=3)
classifiers = st.builds(
    FailureClassifier,
    transient_patterns=patterns,
    permanent_patterns=patterns,
    retryable_status_codes=st.lists(st.integers(500, 599), max_size=4),  # disjoint from the next by construction
    non_retryable_status_codes=st.lists(st.integers(100, 499), max_size=4),
)


@st.composite
def retry_policies(draw: st.DrawFn) -> RetryPolicy:
    base_delay = draw(st.floats(*models.BASE_DELAY_RANGE))
    created = draw(timestamps)
    return RetryPolicy(
        id=draw(names),
        name=draw(names),
        max_attempts=draw(st.integers(*models.MAX_ATTEMPTS_RANGE)),
        base_delay=base_delay,
        multiplier=draw(st.floats(*models.MULTIPLIER_RANGE)),
        max_delay=draw(st.floats(min_value=base_delay, max_value=86400)),
        jitter_factor=draw(st.floats(*models.JITTER_RANGE)),
        failure_classifier=draw(classifiers),
        created_at=created,
        updated_at=draw(
            st.datetimes(min_value=created.replace(tzinfo=None), max_value=LATEST, timezones=st.just(timezone.utc))
        ),
    )


thresholds = st.builds(
    ResourceThreshold,
    id=names,
    name=names,
    memory_percent=optional(percent()),
    memory_absolute=optional(st.integers(min_value=1)),
    cpu_percent=optional(percent()),
    browser_lifetime=optional(st.integers(*models.BROWSER_LIFETIME_RANGE)),
    disk_space=optional(st.integers(min_value=1)),
    network_connections=optional(st.integers(min_value=1)),
    created_at=timestamps,
    is_active=st.booleans(),
)
failure_events = st.builds(
    FailureEvent,
    id=uuids,
    timestamp=timestamps,
    severity=st.sampled_from(FailureSeverity),
    category=st.sampled_from(FailureCategory),
    source=names,
    message=texts,
    context=json_objects,
    stack_trace=texts,
    recovery_action=st.sampled_from(RecoveryAction),
    resolution_time=optional(seconds),
    correlation_id=texts,
)
abort_actions = st.builds(
    AbortAction,
    action_type=st.sampled_from(AbortActionType),
    target=texts,
    parameters=json_objects,
    timeout=st.integers(min_value=1, max_value=86400),
)
abort_policies = st.builds(
    AbortPolicy,
    id=names,
    name=names,
    failure_rate_threshold=optional(percent()),
    window_size=st.integers(min_value=1),
    window_duration=st.integers(min_value=1),
    consecutive_crashes=optional(st.integers(min_value=1)),
    min_operations=st.integers(min_value=1),
    abort_actions=st.lists(abort_actions, max_size=5),
    created_at=timestamps,
    is_active=st.booleans(),
)

STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    Checkpoint: checkpoints,
    CheckpointMetadata: checkpoint_metadata,
    CheckpointData: checkpoint_data,
    ProgressState: progress_states,
    ResourceSnapshot: snapshots,
    ErrorRecord: error_records,
    RetryPolicy: retry_policies(),
    FailureClassifier: classifiers,
    ResourceThreshold: thresholds,
    FailureEvent: failure_events,
    AbortPolicy: abort_policies,
    AbortAction: abort_actions,
}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_there_is_a_strategy_for_every_entity() -> None:
    """The round-trip property below covers every entity of the model."""
    assert set(STRATEGIES) == set(models.ENTITIES)


@pytest.mark.parametrize("cls", models.ENTITIES, ids=lambda cls: cls.__name__)
def test_every_entity_round_trips_through_json(cls: type) -> None:
    """structure(unstructure(x)) == x for every entity, also through JSON text."""

    @FAST
    @given(STRATEGIES[cls])
    def round_trip(entity: Any) -> None:
        data = unstructure(entity)
        assert structure(data, cls) == entity
        assert structure(json.loads(json.dumps(data, allow_nan=False)), cls) == entity

    round_trip()


@FAST
@given(checkpoints)
def test_checkpoint_documents_round_trip(checkpoint: Checkpoint) -> None:
    """checkpoint_from_document(checkpoint_to_document(seal(x))) == seal(x), also through JSON text."""
    sealed = seal(checkpoint)
    document = checkpoint_to_document(sealed)
    assert checkpoint_from_document(document) == sealed
    assert checkpoint_from_document(json.loads(json.dumps(document, ensure_ascii=False))) == sealed


@FAST
@given(failure_events)
def test_failure_events_round_trip_as_single_lines(event: FailureEvent) -> None:
    """An event is one line of JSON (no line break of any kind) and reads back equal."""
    line = event_to_line(event)
    assert line.splitlines() == [line]
    assert event_from_line(line) == event


# --- the document and its canonical form ---


def _checkpoint(**fields: Any) -> Checkpoint:
    data = CheckpointData(
        job_state={"spider_state": {"pages": 3}, "note": 'café ☕ \u2028 "quoted"\n', "ratio": 2.0},
        progress=ProgressState(pending_items=["https://example.com/a"], total_count=10, completion_percentage=30.0),
        errors=[ErrorRecord(item_id="https://example.com/x", error_type="HttpError", error_message="404")],
    )
    defaults: dict[str, Any] = {"job_id": "books", "sequence_number": 4, "data": data}
    return seal(Checkpoint(**{**defaults, **fields}))


def test_document_has_the_keys_of_the_file_format_in_order() -> None:
    """The document holds exactly the data model's keys, in its order, with lowercase enums and Z timestamps."""
    moment = datetime(2025, 1, 27, 15, 30, 0, 123456, tzinfo=timezone.utc)
    document = checkpoint_to_document(_checkpoint(timestamp=moment, status=CheckpointStatus.ACTIVE))
    assert list(document) == [
        "version", "id", "job_id", "timestamp", "sequence_number", "status", "metadata", "data", "checksum",
    ]  # fmt: skip
    assert document["version"] == serialization.SCHEMA_VERSION == "1.0.0"
    assert document["status"] == "active"
    assert document["timestamp"] == "2025-01-27T15:30:00.123456Z"
    whole = checkpoint_to_document(_checkpoint(timestamp=moment.replace(microsecond=0)))
    assert whole["timestamp"] == "2025-01-27T15:30:00Z"


def test_canonical_form_is_sorted_compact_utf8_without_the_checksum() -> None:
    """Keys sorted at every level, no whitespace, raw UTF-8, top-level checksum removed (nested ones kept)."""
    document = {"b": {"z": 1, "a": [1.5, "é"]}, "checksum": "x", "a": {"checksum": True}}
    assert canonical_bytes(document) == '{"a":{"checksum":true},"b":{"a":[1.5,"é"],"z":1}}'.encode()
    assert canonical_bytes(dict(reversed(list(document.items())))) == canonical_bytes(document)
    assert compute_checksum(document) == hashlib.sha256(canonical_bytes(document)).hexdigest()
    with pytest.raises(ValueError):
        canonical_bytes({"x": float("nan")})


def test_seal_sets_the_checksum_of_the_document() -> None:
    """seal replaces the placeholder with the document's checksum, and sealing again changes nothing."""
    unsealed = Checkpoint(job_id="books", sequence_number=1)
    assert unsealed.checksum == models.PLACEHOLDER_CHECKSUM
    sealed = seal(unsealed)
    assert sealed.checksum == compute_checksum(checkpoint_to_document(sealed)) != unsealed.checksum
    assert seal(sealed) == sealed
    assert attrs.evolve(sealed, checksum=unsealed.checksum) == unsealed


def test_docs_snippet_verifies_a_written_file(tmp_path: Path) -> None:
    """The docs' stand-alone verifier accepts a file we write and rejects one altered byte."""
    section = CHECKPOINT_FORMAT_PAGE.read_text(encoding="utf-8").split("## The checksum", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)  # the snippet exactly as documented
    path = tmp_path / "checkpoint-000004.json"
    path.write_text(json.dumps(checkpoint_to_document(_checkpoint()), indent=2, ensure_ascii=False), "utf-8")
    assert namespace["verify"](path) is True
    path.write_text(path.read_text("utf-8").replace('"pages": 3', '"pages": 4'), "utf-8")
    assert namespace["verify"](path) is False


def test_every_single_flipped_character_is_detected() -> None:
    """Flipping any one character of a written manifest makes it unparsable or fail verification."""
    text = json.dumps(checkpoint_to_document(_checkpoint()), ensure_ascii=False)
    loaded = 0
    for index, char in enumerate(text):
        flipped = text[:index] + chr(ord(char) ^ 1) + text[index + 1 :]
        try:
            document = json.loads(flipped)
        except ValueError:
            continue  # not JSON any more: the store reports it as corrupted
        loaded += 1
        with pytest.raises((CheckpointCorruptedError, SchemaVersionError)):
            checkpoint_from_document(document)
    assert loaded > len(text) // 2  # most flips keep valid JSON: the checksum is what catches them


# --- structuring: strict and readable ---


def test_structure_errors_name_every_path() -> None:
    """Every type problem of a document is reported at once, each with its JSONPath."""
    document = checkpoint_to_document(_checkpoint())
    document["metadata"]["processing_time"] = "12"
    del document["job_id"]
    document["data"]["errors"][0]["retry_count"] = True
    with pytest.raises(ValueError) as info:
        structure(document, Checkpoint)
    message = str(info.value)
    assert message.startswith("invalid Checkpoint: ")
    assert "expected float, got '12' @ $.metadata.processing_time" in message
    assert "required field missing @ $.job_id" in message
    assert "expected int, got True @ $.data.errors[0].retry_count" in message


def test_rule_errors_are_reported_at_their_field() -> None:
    """A value of the right type that breaks a rule is reported with the rule, at the field's path."""
    document = checkpoint_to_document(_checkpoint())
    document["metadata"]["total_items"] = -1
    with pytest.raises(
        ValueError, match=re.escape("total_items must be an integer of at least 0, got -1 @ $.metadata.total_items")
    ):
        structure(document, Checkpoint)
    policy = unstructure(RetryPolicy(name="slow"))
    policy["failure_classifier"]["retryable_status_codes"] = [700]
    with pytest.raises(ValueError, match=re.escape("@ $.failure_classifier.retryable_status_codes")):
        structure(policy, RetryPolicy)


@pytest.mark.parametrize(
    ("field", "value"),
    [("sequence_number", "4"), ("sequence_number", 4.5), ("sequence_number", True), ("job_id", 7), ("status", "DONE")],
)
def test_structuring_does_not_coerce(field: str, value: Any) -> None:
    """Strings for numbers, floats for ints, bools for ints, numbers for strings and unknown enums are refused."""
    document = checkpoint_to_document(_checkpoint())
    document[field] = value
    with pytest.raises(ValueError, match=re.escape(f"@ $.{field}")):
        structure(document, Checkpoint)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ("x", "$"),
        ([], "$"),
        (None, "$"),
        ({"job_state": []}, "$.job_state"),
        ({"errors": {}}, "$.errors"),
        ({"errors": ["x"]}, "$.errors[0]"),
        ({"progress": 5}, "$.progress"),
        ({"progress": {"pending_items": "abc"}}, "$.progress.pending_items"),
    ],
)
def test_json_shapes_are_not_coerced(data: Any, path: str) -> None:
    """An entity needs an object and a sequence an array: a string is not read as its characters."""
    with pytest.raises(ValueError, match=re.escape("expected a JSON ") + ".*" + re.escape(f"@ {path}")):
        structure(data, CheckpointData)


def test_an_integer_is_accepted_for_a_float() -> None:
    """JSON writers may write 2.0 as 2: a float field reads it as 2.0."""
    data = unstructure(ResourceSnapshot())
    data["cpu_usage"] = 2
    snapshot = structure(data, ResourceSnapshot)
    assert snapshot.cpu_usage == 2.0 and isinstance(snapshot.cpu_usage, float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-27T15:30:00Z", datetime(2025, 1, 27, 15, 30, tzinfo=timezone.utc)),
        ("2025-01-27T15:30:00.123456Z", datetime(2025, 1, 27, 15, 30, 0, 123456, tzinfo=timezone.utc)),
        ("2025-01-27T15:30:00.5Z", datetime(2025, 1, 27, 15, 30, 0, 500000, tzinfo=timezone.utc)),
        ("2025-01-27T17:30:00.123+02:00", datetime(2025, 1, 27, 15, 30, 0, 123000, tzinfo=timezone.utc)),
        ("2025-01-27T15:30:00+00:00", datetime(2025, 1, 27, 15, 30, tzinfo=timezone.utc)),
    ],
)
def test_timestamps_parse_with_and_without_fraction(text: str, expected: datetime) -> None:
    """ISO 8601 with Z or an offset, with or without a fraction, reads as the same UTC instant."""
    parsed = structure({**unstructure(ResourceSnapshot()), "timestamp": text}, ResourceSnapshot).timestamp
    assert parsed == expected and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2025-01-27T15:30:00", "2025-01-27 15:30:00Z", "27/01/2025", "", 1737991800])
def test_timestamps_without_zone_or_in_other_forms_are_refused(text: Any) -> None:
    """A timestamp without a zone, or not ISO 8601, is refused (never guessed)."""
    with pytest.raises(ValueError, match=r"@ \$\.timestamp"):
        structure({**unstructure(ResourceSnapshot()), "timestamp": text}, ResourceSnapshot)


# --- schema versions ---


def _resealed(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "checksum": compute_checksum(document)}


def test_newer_minor_version_loads_and_names_the_ignored_fields(caplog: pytest.LogCaptureFixture) -> None:
    """A 1.4.2 document with fields we do not know loads; a warning names each ignored field."""
    original = _checkpoint()
    document = checkpoint_to_document(original)
    document["version"] = "1.4.2"
    document["labels"] = ["nightly"]
    document["metadata"]["gpu_usage"] = 3
    document["data"]["errors"][0]["http_status"] = 404
    with caplog.at_level(logging.WARNING, logger="scrapy_resilience.model.serialization"):
        checkpoint = checkpoint_from_document(_resealed(document))
    assert checkpoint.version == "1.4.2"
    assert attrs.evolve(checkpoint, version=original.version, checksum=original.checksum) == original
    assert "newer than 1.0.0" in caplog.text
    for path in ("$.labels", "$.metadata.gpu_usage", "$.data.errors[0].http_status"):
        assert path in caplog.text


def test_unknown_fields_in_a_known_version_are_refused() -> None:
    """A 1.0.x document with a field 1.0.0 does not define is invalid, not silently trimmed."""
    document = checkpoint_to_document(_checkpoint())
    document["metadata"]["gpu_usage"] = 3
    with pytest.raises(CheckpointCorruptedError, match=r"unknown fields .*\$\.metadata\.gpu_usage"):
        checkpoint_from_document(_resealed(document))


@pytest.mark.parametrize("version", ["2.0.0", "17.3.1"])
def test_unknown_major_version_is_refused_clearly(version: str) -> None:
    """A document of a newer major version raises SchemaVersionError saying what to do."""
    document = _resealed({**checkpoint_to_document(_checkpoint()), "version": version})
    with pytest.raises(SchemaVersionError, match=rf"{re.escape(version)} is newer .* upgrade scrapy-resilience"):
        checkpoint_from_document(document)


@pytest.mark.parametrize("version", [None, "", "1.0", "one", 1])
def test_a_document_without_a_valid_version_is_corrupted(version: Any) -> None:
    """A missing or malformed version makes the document corrupted, not of some guessed version."""
    document = {**checkpoint_to_document(_checkpoint()), "version": version}
    with pytest.raises(CheckpointCorruptedError, match="no valid schema version"):
        checkpoint_from_document(_resealed(document))


@pytest.mark.parametrize("document", [[], "checkpoint", None, 3])
def test_a_document_that_is_not_an_object_is_corrupted(document: Any) -> None:
    """Valid JSON that is not an object is reported as corrupted."""
    with pytest.raises(CheckpointCorruptedError, match="JSON object"):
        checkpoint_from_document(document)


def test_cannot_write_a_checkpoint_of_another_major_version() -> None:
    """checkpoint_to_document writes only the current layout."""
    with pytest.raises(SchemaVersionError):
        checkpoint_to_document(Checkpoint(job_id="books", sequence_number=1, version="0.9.0"))


def test_pre_release_document_is_verified_with_its_rules_and_migrated() -> None:
    """The real 0.9.0 file passes its own checksum (not 1.0's), migrates, and is re-sealed as 1.0.0."""
    original = json.loads(V0_FILE.read_text("utf-8"))
    assert original["version"] == "0.9.0"
    assert compute_checksum(original) != original["checksum"]  # 1.0 rules do not verify it
    checkpoint = checkpoint_from_document(copy.deepcopy(original))
    assert checkpoint.version == serialization.SCHEMA_VERSION
    assert checkpoint.id == original["id"]
    assert checkpoint.timestamp == datetime(2024, 11, 5, 9, 12, 44, 318207, tzinfo=timezone.utc)
    assert checkpoint.sequence_number == 7
    assert checkpoint.status is CheckpointStatus.COMPLETED
    assert checkpoint.metadata.browser_sessions == ()
    assert checkpoint.metadata.total_items == 1200
    assert checkpoint.data.job_state["note"] == "café — pre-release"
    assert checkpoint.data.errors[0].timestamp.microsecond == 500000
    assert checkpoint_from_document(checkpoint_to_document(checkpoint)) == checkpoint


def test_pre_release_document_with_a_changed_value_is_corrupted() -> None:
    """A 0.9.0 file altered after writing fails its 0.9.0 checksum before any migration."""
    document = json.loads(V0_FILE.read_text("utf-8"))
    document["seq"] = 8
    with pytest.raises(CheckpointCorruptedError, match="checksum mismatch"):
        checkpoint_from_document(document)


def test_pre_release_document_that_cannot_be_migrated_is_corrupted() -> None:
    """A 0.9.0 file lacking a field the migration needs is reported as corrupted, with the field."""
    document = json.loads(V0_FILE.read_text("utf-8"))
    del document["seq"]
    content = {key: value for key, value in document.items() if key != "checksum"}
    document["checksum"] = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    with pytest.raises(CheckpointCorruptedError, match=r"cannot migrate .*seq"):
        checkpoint_from_document(document)


# --- event lines ---


@pytest.mark.parametrize("line", ["", "{", "[]", "null", '{"id": 1}', '{"severity": "low"}', "not json"])
def test_garbage_event_lines_raise_value_error(line: str) -> None:
    """Anything that is not a valid event's JSON raises ValueError (so a torn line can be skipped)."""
    with pytest.raises(ValueError):
        event_from_line(line)


def test_event_line_uses_the_json_form() -> None:
    """An event line carries lowercase enum values, a Z timestamp and null for an unresolved event."""
    event = FailureEvent(
        severity=FailureSeverity.CRITICAL,
        category=FailureCategory.BROWSER,
        source="monitor",
        message="Page crashed",
        recovery_action=RecoveryAction.RESTART,
        timestamp=datetime(2025, 1, 27, 15, 30, tzinfo=timezone.utc),
    )
    data = json.loads(event_to_line(event))
    assert data["severity"] == "critical" and data["category"] == "browser" and data["recovery_action"] == "restart"
    assert data["timestamp"] == "2025-01-27T15:30:00Z"
    assert data["resolution_time"] is None


_LONG_LIVED = """
import gc, sys
# The classes under collections.abc.Mapping of a crawl's process (about 100).
import lxml.html, scrapy.crawler, scrapy.http, twisted.web.client
from scrapy_resilience.model.entities import *  # noqa
from scrapy_resilience.model.serialization import checkpoint_from_document, checkpoint_to_document, seal
checkpoint = Checkpoint(job_id="books", sequence_number=1, data=CheckpointData(
    job_state={"spider_state": {"pages": 3}, "seen": [1, 2.5, None, True]},
    errors=[ErrorRecord(item_id="https://example.com/x", error_type="HttpError", error_message="404")]))
gc.collect()
before = len(gc.get_objects())
sealed = seal(checkpoint)
assert checkpoint_from_document(checkpoint_to_document(sealed)) == sealed
del sealed
gc.collect()
print(len(gc.get_objects()) - before)
"""


def test_writing_and_reading_a_checkpoint_leaves_few_long_lived_objects() -> None:
    """Every object that outlives a checkpoint is walked by each of the garbage collector's full passes.

    Asking cattrs to pick a hook for a type (int, an enum, an entity) asked
    whether it is a Mapping, which left an entry in the cache of each of the
    ~100 classes under ``collections.abc.Mapping``: 1,000 objects in this
    process for the first checkpoint written (2,900 in a crawl's). The hooks
    cattrs generates for reading stay (about 150).
    """
    output = subprocess.run([sys.executable, "-c", _LONG_LIVED], capture_output=True, text=True, check=True)
    assert int(output.stdout) < 400
