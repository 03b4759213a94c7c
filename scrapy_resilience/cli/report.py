"""Text rendering of the inspection command's views (``jobview``) for people.

Machines get the same views as JSON (``--json``); what is printed here may
change between versions, the JSON keys may not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

MISSING = "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned table: numbers right-aligned, text left-aligned, ``-`` for nothing."""
    cells = [[MISSING if value is None else str(value) for value in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]
    lines = []
    for row in [list(headers), *cells]:
        padded = (cell.rjust(w) if n else cell.ljust(w) for cell, w, n in zip(row, widths, numeric, strict=True))
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def render_list(directory: str, summaries: list[dict[str, Any]]) -> str:
    if not summaries:
        return f"{directory}: no checkpoints"
    corrupted = sum(1 for summary in summaries if summary["status"] == "corrupted")
    head = f"{directory}: {len(summaries)} checkpoint(s), {corrupted} corrupted"
    rows = []
    for summary in summaries:
        progress = summary["progress"] or {}
        rows.append([
            summary["sequence"], summary["status"], summary["timestamp"], progress.get("completed"),
            progress.get("pending"), progress.get("failed"), progress.get("items"), human_size(summary["size"]),
            summary["reason"] or summary["close_reason"] or "",
        ])  # fmt: skip
    headers = ["SEQ", "STATUS", "TIMESTAMP", "DONE", "PENDING", "FAILED", "ITEMS", "SIZE", "CLOSE REASON / PROBLEM"]
    return head + "\n" + table(headers, rows)


def render_verify(directory: str, summaries: list[dict[str, Any]]) -> str:
    corrupted = [summary for summary in summaries if summary["status"] == "corrupted"]
    if not summaries:
        return f"{directory}: no checkpoints to verify"
    if not corrupted:
        return f"{directory}: all {len(summaries)} checkpoint(s) valid"
    rows = [[summary["sequence"], summary["file"], summary["reason"]] for summary in corrupted]
    head = f"{directory}: {len(corrupted)} of {len(summaries)} checkpoint(s) CORRUPTED"
    return head + "\n" + table(["SEQ", "FILE", "WHY"], rows)


def render_show(detail: dict[str, Any]) -> str:
    lines = [f"Checkpoint {detail['sequence']} ({detail['file']}): {detail['status'].upper()}"]
    if detail["reason"]:
        lines.append(f"  problem: {detail['reason']}")
    if "checkpoint" not in detail:
        return "\n".join(lines)
    lines += _fields("Checkpoint", detail["checkpoint"])
    metadata = {key: value for key, value in detail["metadata"].items() if key != "system_resources"}
    lines += _fields("Metadata", {**metadata, "size": human_size(detail["size"])})
    lines += _fields("System resources", detail["metadata"]["system_resources"])
    lines += _fields("Job state", detail["job_state"])
    state = detail["progress_state"]
    lines += _fields("Progress", {**(detail["progress"] or {}), "current_item": state["current_item"],
                                  "completion_percentage": state["completion_percentage"]})
    if detail["stats"]:
        lines += _fields("Stats", detail["stats"])
    lines.append("")
    lines.append("Sidecars:")
    if detail["sidecars"]:
        rows = [[name, ref["file"], human_size(ref["size"]), ref["sha256"][:16]] for name, ref in
                sorted(detail["sidecars"].items())]
        lines += ["  " + line for line in table(["NAME", "FILE", "SIZE", "SHA-256"], rows).splitlines()]
    else:
        lines.append("  none")
    lines.append("")
    lines.append(f"Errors since the previous checkpoint: {len(detail['errors'])}")
    for error in detail["errors"][-5:]:
        lines.append(f"  {error['timestamp']} {error['error_type']}: {error['error_message']}")
    lines.append("")
    lines.append(f"Poison requests set aside (manual intervention): {len(detail['poison_requests'])}")
    for event in detail["poison_requests"]:
        url = event["context"].get("url") or event["context"].get("request", {}).get("url", "")
        lines.append(f"  {event['timestamp']} {url} {event['message']}")
    lines.append("")
    lines.append("Browser state:")
    state = json.dumps(detail["browser_state"], indent=2, sort_keys=True) if detail["browser_state"] else "none"
    lines += ["  " + line for line in state.splitlines()]
    return "\n".join(lines)


def _fields(title: str, values: dict[str, Any]) -> list[str]:
    width = max((len(key) for key in values), default=0)
    return ["", title + ":"] + [f"  {key.ljust(width)}  {_scalar(value)}" for key, value in values.items()]


def _scalar(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def render_groups(directory: str, groups: list[dict[str, Any]], skipped: int) -> str:
    total = sum(group["count"] for group in groups)
    head = f"{directory}: {total} failure event(s) in {len(groups)} group(s)"
    if skipped:
        head += f" ({skipped} damaged line(s) skipped)"
    if not groups:
        return head
    rows = [[group["count"], group["category"], _counts(group["severities"]), _counts(group["recovery_actions"]),
             group["last"], group["pattern"]] for group in groups]
    return head + "\n" + table(["COUNT", "CATEGORY", "SEVERITY", "ACTION", "LAST", "MESSAGE PATTERN"], rows)


def render_events(directory: str, events: list[dict[str, Any]], skipped: int) -> str:
    head = f"{directory}: {len(events)} failure event(s)"
    if skipped:
        head += f" ({skipped} damaged line(s) skipped)"
    if not events:
        return head
    rows = [[event["timestamp"], event["severity"], event["category"], event["source"], event["recovery_action"],
             event["message"]] for event in events]
    return head + "\n" + table(["TIMESTAMP", "SEVERITY", "CATEGORY", "SOURCE", "ACTION", "MESSAGE"], rows)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name}:{count}" if count > 1 else name for name, count in sorted(counts.items()))
