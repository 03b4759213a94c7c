"""Sealing a checkpoint (worker thread), and the small state a checkpoint carries.

``Sealer.seal`` runs off the reactor thread: it fsyncs the feed files and the
sealed journal segments, stores each segment once as an immutable delta
sidecar, compacts base + deltas into a new base when the deltas have grown as
big as the base (so the cost of a checkpoint follows the work done since the
last one, not the size of the crawl, and compaction is amortised), commits the
manifest, and removes journal segments that two checkpoints now cover (the
newest one may turn out corrupted; resume then falls back to the previous one,
which needs the segments after it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil

from scrapy_resilience import stats
from scrapy_resilience.checkpoint import codec
from scrapy_resilience.jobdir.journal import JOURNAL_DIR, Replay, fingerprint_lines, segment_numbers, segment_path
from scrapy_resilience.jobdir.resume import LoadedJob, chain_order
from scrapy_resilience.jobdir.store import CheckpointStore, SidecarRef
from scrapy_resilience.model.entities import (
    Checkpoint,
    CheckpointData,
    CheckpointMetadata,
    ErrorRecord,
    ProgressState,
    ResourceSnapshot,
)

logger = logging.getLogger(__name__)

COMPACT_AFTER_DELTAS = 32  # this many deltas are merged into one (the manifest lists each)
COMPACT_MIN_BYTES = 4 << 20  # below this, deltas are cheaper to replay than to compact
# Compacting drops the lines of finished requests and nothing else: deltas that
# end fewer requests than a quarter of those they add (a callback scheduling
# 200,000 at once) would be rewritten almost whole, holding the frontier in
# memory and the GIL from the crawl, for a base nearly as big.
COMPACT_MIN_ENDED = 0.25
_CHUNK = 1 << 20
MB = 1 << 20

# Stats that are not counters of work: not added up across runs at resume.
_NOT_COUNTERS = frozenset({
    "elapsed_time_seconds", "memusage/startup", stats.CHECKPOINT_LAST_SEQUENCE,
    stats.RESUME_REQUESTS_RESTORED, stats.RESUME_CRASHES, stats.RETRY_HELD,
})


class Sealer:
    """The job's store plus the chain of sidecars the next checkpoint lists."""

    def __init__(self, directory: Path, *, job_id: str, retention: int, compress: bool) -> None:
        self.store = CheckpointStore(directory, job_id=job_id, retention=retention, compress=compress)
        self.journal_dir = directory / JOURNAL_DIR
        self.chain: dict[str, SidecarRef] = {}
        # Per delta written by this process: (requests it adds, requests it ends); see COMPACT_MIN_ENDED.
        self._counts: dict[str, tuple[int, int]] = {}
        self._unsealed_from = 1  # journal segments from this number on are not in any checkpoint

    def start_from(self, job: LoadedJob) -> None:
        self.chain = dict(job.chain)
        self._unsealed_from = job.journal_upto + 1

    def seal(self, *, fds: list[int], sealed: int, job_state: dict[str, Any], browser_state: dict[str, Any],
             progress: dict[str, Any], errors: list[Any], snapshot: ResourceSnapshot | None) -> Checkpoint:
        for fd in fds:
            with contextlib.suppress(OSError):  # closed since, or not a regular file
                os.fsync(fd)
        for number in segment_numbers(self.journal_dir):
            if self._unsealed_from <= number <= sealed:
                path, name, counts = segment_path(self.journal_dir, number), f"delta-{number:08d}", [0, 0]
                self.chain[name] = self.store.write_sidecar(name, _chunks(path, counts))
                self._counts[name] = (counts[0], counts[1])
        self._maybe_compact()
        state = {**job_state, "spider_state": _state_json(job_state["spider_state"])}
        metadata = CheckpointMetadata(
            total_items=progress["total_count"],
            completed_items=job_state["requests_done"],
            failed_items=int(job_state["stats"].get(stats.RETRY_GAVE_UP, 0))
            + int(job_state["stats"].get(stats.RETRY_PERMANENT, 0)),
            processing_time=job_state["processing_time"],
            browser_sessions=_session_ids(browser_state),
            system_resources=snapshot or take_snapshot(self.store.directory),
        )
        data = CheckpointData(
            job_state=json.loads(json.dumps(state)),
            browser_state=json.loads(json.dumps(browser_state)),
            progress=ProgressState(
                current_item=progress["current_item"], completed_items=progress["completed_items"],
                failed_items=[_error_record(event).item_id for event in errors][-20:],
                total_count=progress["total_count"], completion_percentage=progress["completion_percentage"],
            ),
            errors=[_error_record(event) for event in errors],
        )
        checkpoint = self.store.commit(metadata=metadata, data=data, sidecars=self.chain)
        previous_upto, self._unsealed_from = self._unsealed_from - 1, sealed + 1
        for number in segment_numbers(self.journal_dir):
            if number <= previous_upto:  # in two checkpoints now: no fallback needs the file
                segment_path(self.journal_dir, number).unlink(missing_ok=True)
        return checkpoint

    def _merge_deltas(self, deltas: list[str]) -> None:
        """Many small deltas become one (same order, named after the last): the manifest stays short
        without rewriting a base that is still much bigger than them."""
        refs = [self.chain.pop(name) for name in deltas]
        self.chain[deltas[-1]] = self.store.write_sidecar(deltas[-1], _concatenated(self.store, refs))
        if all(name in self._counts for name in deltas):
            counts = [self._counts.pop(name) for name in deltas]
            self._counts[deltas[-1]] = (sum(c[0] for c in counts), sum(c[1] for c in counts))

    def _ends_enough(self, deltas: list[str]) -> bool:
        """Whether the deltas end enough requests for a compaction to pay (unknown counts: assume so)."""
        if not all(name in self._counts for name in deltas):
            return True  # deltas of an earlier run
        added = sum(self._counts[name][0] for name in deltas)
        ended = sum(self._counts[name][1] for name in deltas)
        return ended >= COMPACT_MIN_ENDED * added

    def _maybe_compact(self) -> None:
        deltas = [name for name in self.chain if name != "base"]
        delta_bytes = sum(self.chain[name].size for name in deltas)
        base_bytes = self.chain["base"].size if "base" in self.chain else 0
        if delta_bytes < COMPACT_MIN_BYTES or delta_bytes < base_bytes or not self._ends_enough(deltas):
            if len(deltas) >= COMPACT_AFTER_DELTAS:
                self._merge_deltas(sorted(deltas))
            return
        names = sorted(self.chain, key=chain_order)
        replay = Replay(fingerprints=False)  # fingerprints are streamed over, not collected
        for name in names:
            replay.feed(self.store.sidecar_lines(self.chain[name]))

        def base() -> Iterator[bytes]:
            yield from replay.frontier_lines()
            for name in names:
                yield from fingerprint_lines(self.store.sidecar_lines(self.chain[name]))

        self.chain = {"base": self.store.write_sidecar("base", base())}
        self._counts.clear()
        pending = len(replay.pending)
        replay.pending.clear()
        logger.debug("Frontier compacted: %d pending requests", pending)


def _concatenated(store: CheckpointStore, refs: list[SidecarRef]) -> Iterator[bytes]:
    for ref in refs:
        # Complete lines only: a delta may end with a line torn by a kill,
        # which must not swallow the first line of the next one.
        yield from (line for line in store.sidecar_lines(ref) if line.endswith(b"\n"))


def _session_ids(browser_state: Mapping[str, Any]) -> tuple[str, ...]:
    """The browser contexts the providers saved (``{"contexts": {name: ...}}``), as session ids."""
    ids: list[str] = []
    for value in browser_state.values():
        contexts = value.get("contexts") if isinstance(value, dict) else None
        if isinstance(contexts, dict):
            ids.extend(str(name) for name in contexts)
    return tuple(sorted(ids))


def _chunks(path: Path, counts: list[int]) -> Iterator[bytes]:
    """The bytes of a journal segment; ``counts`` gets the requests it adds and ends.

    Counted by line starts within each block (a line cut by a block boundary
    is missed): an estimate for ``COMPACT_MIN_ENDED``, at C speed.
    """
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
        while chunk := handle.read(_CHUNK):
            counts[0] += chunk.count(b'\n{"a":')
            counts[1] += chunk.count(b'\n{"d":') + chunk.count(b'\n{"p":')
            yield chunk


def _state_json(state: Any) -> Any:
    try:
        return codec.to_json(state)
    except TypeError as exc:
        logger.warning("spider.state cannot be checkpointed (%s); it is left out of this checkpoint", exc)
        return None


def _error_record(event: Any) -> ErrorRecord:
    context = event.context or {}
    return ErrorRecord(
        timestamp=event.timestamp,
        item_id=str(context.get("url") or event.correlation_id or event.id),
        error_type=event.category.value,
        error_message=event.message[:1000],
        retry_count=int(context.get("attempt", 0) or 0),
        resolved=False,
    )


def take_snapshot(directory: Path) -> ResourceSnapshot:
    """A cheap ResourceSnapshot of this process, when the monitor has none (blocking)."""
    process = psutil.Process()
    with process.oneshot():
        rss = process.memory_info().rss
        children = process.children(recursive=True)
    disk = shutil.disk_usage(directory if directory.exists() else Path.cwd())
    return ResourceSnapshot(memory_usage=round(rss / MB), cpu_usage=0.0, disk_usage=round(disk.used / MB),
                            network_connections=0, process_count=1 + len(children))


def snapshot_stats(collector: Any) -> dict[str, float]:
    """The numeric stats (counters and maxima) worth carrying over to the next run."""
    return {key: value for key, value in collector.get_stats().items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in _NOT_COUNTERS}


def restore_stats(collector: Any, saved: Mapping[str, float]) -> None:
    """Add an earlier run's counters to this run's (maxima keep the larger value)."""
    for key, value in saved.items():
        if key in _NOT_COUNTERS or key.endswith("_per_minute") or not isinstance(value, (int, float)):
            continue  # rates (LogStats) are per run
        if key.rsplit("/", 1)[-1].endswith("max"):
            collector.max_value(key, value)
        else:
            collector.set_value(key, collector.get_value(key, 0) + value)


def repair_feeds(settings: Any) -> None:
    """Cut a torn last line from the local JSON lines feeds a killed run left (blocking, at start-up)."""
    for uri, options in settings.getdict("FEEDS").items():
        uri = str(uri)
        if (options or {}).get("format") not in ("jsonlines", "jl") or "%(" in uri:
            continue
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:  # one letter: a Windows drive
            continue
        path = Path(parsed.path if parsed.scheme == "file" else uri)
        if not path.is_file():
            continue
        with path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            tail_start = max(0, size - _CHUNK)
            handle.seek(tail_start)
            tail = handle.read()
            if tail and not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                handle.truncate(tail_start + cut + 1 if cut >= 0 else tail_start)
                logger.warning("Cut a torn last line from the feed %s (its item is crawled again)", path)
