"""Read-only views of a job directory, for the inspection command and the supervisor.

Everything here reads (through ``CheckpointStore``, ``EventLog`` and
``resume.requests_settled``) and modifies nothing, so it is safe to run while a
crawl writes the same directory. The
views are plain JSON-able dicts: ``--json`` prints them as they are, and
``inspect_report`` renders them as tables for people.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from scrapy_resilience.events.log import EVENTS_FILE, EventLog
from scrapy_resilience.jobdir.resume import requests_settled
from scrapy_resilience.jobdir.store import CheckpointEntry, CheckpointStore
from scrapy_resilience.model.entities import Checkpoint, CheckpointStatus, FailureEvent, RecoveryAction
from scrapy_resilience.model.serialization import checkpoint_to_document, event_to_line

# The job id only matters for writing; reading lists whatever the directory holds.
READER_JOB_ID = "inspect"
ITEMS_STAT = "item_scraped_count"


class JobDirError(Exception):
    """The directory given is not there (the command exits 2 with this message)."""


def job_directory(path: str | Path) -> Path:
    """The job directory for ``path``: the directory itself, or the parent of its ``checkpoints/``."""
    directory = Path(path)
    if not directory.is_dir():
        raise JobDirError(f"{directory}: no such directory (give the job's RESILIENCE_CHECKPOINT_DIR)")
    if directory.name == "checkpoints" and not (directory / "checkpoints").is_dir():
        return directory.parent
    return directory


def open_store(directory: Path) -> CheckpointStore:
    return CheckpointStore(directory, job_id=READER_JOB_ID)


def read_events(directory: Path) -> tuple[list[FailureEvent], int]:
    """The job's failure events, oldest first, and the number of damaged lines skipped."""
    log = EventLog(directory)
    events = log.read()
    return events, log.skipped_lines


# -- progress, for `list` and for the supervisor's crash-loop detection -------


def iso_utc(moment: datetime) -> str:
    """ISO 8601 with ``Z``, as the checkpoint file writes timestamps."""
    return moment.isoformat().replace("+00:00", "Z")


def stats_of(checkpoint: Checkpoint) -> dict[str, Any]:
    stats = checkpoint.data.job_state.get("stats")
    return stats if isinstance(stats, dict) else {}


def progress_of(checkpoint: Checkpoint) -> dict[str, int]:
    """Completed, pending and failed requests, and items scraped, as the checkpoint records them."""
    metadata = checkpoint.metadata
    return {
        "completed": metadata.completed_items,
        "pending": max(metadata.total_items - metadata.completed_items, 0),
        "failed": metadata.failed_items,
        "items": int(stats_of(checkpoint).get(ITEMS_STAT, 0) or 0),
    }


@attrs.frozen
class JobSnapshot:
    """What the supervisor compares between runs: the newest checkpoint, and the work done so far.

    Requests done and set aside are the checkpoint's counts plus the requests
    the journal marked done or set aside after it (``resume.requests_settled``),
    so a run killed before its first checkpoint still shows its work. A poison
    request set aside counts as progress: it ends the streak of deaths it caused.
    """

    sequence: int = 0
    close_reason: str | None = None
    # Requests completed, items scraped, poison requests set aside (checkpoint and journal after it).
    done: tuple[int, int, int] = (0, 0, 0)

    def progress_since(self, earlier: JobSnapshot) -> bool:
        """True when this snapshot records more requests done, items or requests set aside than ``earlier``."""
        return any(now > before for now, before in zip(self.done, earlier.done, strict=True))


def read_snapshot(directory: Path, *, job_id: str | None = None) -> JobSnapshot:
    loaded = CheckpointStore(directory, job_id=job_id or READER_JOB_ID).load_latest()
    done, set_aside = requests_settled(directory)
    if loaded is None:
        return JobSnapshot(done=(done, 0, set_aside))
    checkpoint = loaded.checkpoint
    reason = checkpoint.data.job_state.get("close_reason")
    return JobSnapshot(
        sequence=checkpoint.sequence_number,
        close_reason=reason if isinstance(reason, str) else None,
        done=(done, progress_of(checkpoint)["items"], set_aside),
    )


# -- checkpoints --------------------------------------------------------------


def entry_summary(entry: CheckpointEntry) -> dict[str, Any]:
    """One line of ``list``/``verify``: status, sequence, timestamp, progress, size, reason."""
    summary: dict[str, Any] = {
        "sequence": entry.sequence,
        "file": entry.file,
        "status": entry.status.value,
        "size": entry.size + sum(ref.size for ref in entry.sidecars.values()),
        "reason": entry.reason,
        "timestamp": None,
        "progress": None,
        "close_reason": None,
    }
    if entry.checkpoint is not None:
        summary["timestamp"] = iso_utc(entry.checkpoint.timestamp)
        summary["progress"] = progress_of(entry.checkpoint)
        summary["close_reason"] = entry.checkpoint.data.job_state.get("close_reason")
    return summary


def select_entry(entries: list[CheckpointEntry], sequence: int | None) -> CheckpointEntry | None:
    """Checkpoint ``sequence``, or the one a resume would load (the newest valid) when None."""
    for entry in entries:
        if sequence is None and entry.status is CheckpointStatus.COMPLETED:
            return entry
        if entry.sequence == sequence:
            return entry
    return None


JOB_STATE_FIELDS = ("close_reason", "runs", "crashes", "clean_close", "requests_done")


def entry_detail(entry: CheckpointEntry, events: Iterable[FailureEvent], *, reveal: bool) -> dict[str, Any]:
    """Everything ``show`` prints about one checkpoint; secrets masked unless ``reveal``."""
    detail = entry_summary(entry)
    detail["sidecars"] = {name: attrs.asdict(ref) for name, ref in entry.sidecars.items()}
    if entry.checkpoint is None:
        return detail
    document = checkpoint_to_document(entry.checkpoint)
    job_state = {key: value for key, value in document["data"]["job_state"].items() if key != "sidecars"}
    detail["checkpoint"] = {
        key: document[key] for key in ("id", "job_id", "version", "timestamp", "sequence_number", "status", "checksum")
    }
    detail["metadata"] = document["metadata"]
    detail["job_state"] = {key: job_state.get(key) for key in JOB_STATE_FIELDS}
    detail["stats"] = job_state.get("stats", {})
    detail["job_state_keys"] = sorted(job_state)
    progress = document["data"]["progress"]
    detail["progress_state"] = {
        "current_item": progress["current_item"],
        "completed_items": len(progress["completed_items"]),
        "failed_items": len(progress["failed_items"]),
        "pending_items": len(progress["pending_items"]),
        "total_count": progress["total_count"],
        "completion_percentage": progress["completion_percentage"],
    }
    detail["errors"] = document["data"]["errors"]
    detail["browser_state"] = document["data"]["browser_state"]
    detail["poison_requests"] = [event_document(event) for event in poison_events(events)]
    return detail if reveal else mask_secrets(detail)


def poison_events(events: Iterable[FailureEvent]) -> list[FailureEvent]:
    """Requests set aside for manual intervention (RecoveryAction MANUAL)."""
    return [event for event in events if event.recovery_action is RecoveryAction.MANUAL]


def event_document(event: FailureEvent) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(event_to_line(event))
    return document


# -- secrets ------------------------------------------------------------------

MASK = "***"
# Keys whose whole value is a secret: header names and credentials.
SECRET_KEYS = frozenset({"cookie", "set-cookie", "authorization", "proxy-authorization", "password"})
# Containers of name/value pairs (cookie jars, browser storage): names kept, values masked.
NAMED_VALUE_KEYS = frozenset({"cookies", "localstorage", "sessionstorage"})
_COOKIE_FIELDS = frozenset({"domain", "path", "expires", "httpOnly", "secure"})


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with cookie values, storage values and credentials masked; names are kept."""
    lowered = key.lower()
    if lowered in SECRET_KEYS:
        return _mask_all(value)
    if lowered in NAMED_VALUE_KEYS:
        return _mask_values(value)
    if isinstance(value, dict):
        masked = {name: mask_secrets(item, str(name)) for name, item in value.items()}
        if "name" in value and "value" in value and _COOKIE_FIELDS & value.keys():
            masked["value"] = MASK  # a cookie object wherever it sits
        return masked
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def _mask_all(value: Any) -> Any:
    if isinstance(value, str):
        return _mask_header(value)
    if isinstance(value, list):
        return [_mask_all(item) for item in value]
    if isinstance(value, dict):
        return {name: _mask_all(item) for name, item in value.items()}
    return None if value is None else MASK


def _mask_values(value: Any) -> Any:
    if isinstance(value, list):
        return [{**item, "value": MASK} if isinstance(item, dict) and "value" in item else _mask_all(item)
                for item in value]
    if isinstance(value, dict) and not ("name" in value and "value" in value):
        return {name: _mask_all(item) for name, item in value.items()}  # a jar as {name: value}
    return _mask_all(value)


def _mask_header(value: str) -> str:
    """``a=1; b=2`` becomes ``a=***; b=***``; a value without names is masked whole."""
    if "=" not in value:
        return MASK
    parts = [part.strip() for part in value.split(";")]
    return "; ".join(part.split("=", 1)[0] + "=" + MASK if "=" in part else part for part in parts)


# -- events -------------------------------------------------------------------

_NORMALIZERS = (
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE), "<url>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE), "<id>"),
    # Hex ids (hashes, fingerprints, object addresses): 8+ hex digits mixing digits and letters.
    (re.compile(r"\b(?:0x)?(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)


def message_pattern(message: str) -> str:
    """The message with URLs, ids, hex strings and numbers replaced, so that alike messages group."""
    for regex, placeholder in _NORMALIZERS:
        message = regex.sub(placeholder, message)
    return message


def group_events(events: Iterable[FailureEvent]) -> list[dict[str, Any]]:
    """Events grouped by category and message pattern, most frequent first."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        key = (event.category.value, message_pattern(event.message))
        stamp = iso_utc(event.timestamp)
        group = groups.setdefault(key, {
            "category": key[0], "pattern": key[1], "count": 0, "severities": {}, "recovery_actions": {},
            "first": stamp, "last": stamp, "example": event.message,
        })  # fmt: skip
        group["count"] += 1
        group["last"] = max(group["last"], stamp)
        group["first"] = min(group["first"], stamp)
        for field, value in (("severities", event.severity.value), ("recovery_actions", event.recovery_action.value)):
            group[field][value] = group[field].get(value, 0) + 1
    return sorted(groups.values(), key=lambda group: (-group["count"], group["category"], group["pattern"]))


def events_file(directory: Path) -> Path:
    return directory / EVENTS_FILE
