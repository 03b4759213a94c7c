"""Reading a job directory back: the newest valid checkpoint, its journal, the runs that died.

``load_job`` (blocking, run off the reactor thread) replays the checkpoint's
sidecars (a compacted base and delta segments) and then the journal segments
written after it, so a crawl killed between two checkpoints redoes almost
nothing. It also counts the runs that died since the last clean close and
judges poison requests: a request that was in flight each time the job died,
``limit`` runs in a row, is set aside instead of being put back.
"""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path
from typing import Any

import attrs

from scrapy_resilience.jobdir.fileio import read_lines
from scrapy_resilience.jobdir.journal import JOURNAL_DIR, Replay, count_done, segment_numbers, segment_path
from scrapy_resilience.jobdir.store import CheckpointStore, SidecarRef
from scrapy_resilience.meta import CRASHES_KEY
from scrapy_resilience.model.entities import Checkpoint

logger = logging.getLogger(__name__)

# Consecutive deaths with a request in flight that make it a poison request,
# when RESILIENCE_ABORT_CONSECUTIVE_CRASHES is 0 (off): the supervisor's
# crash-loop default. The request is set aside when the run after its Nth
# death starts; a supervisor that saw no progress in those N runs has declared
# a crash loop by then (the poison page stopped the whole crawl), otherwise the
# crawl goes on without it.
DEFAULT_POISON_CRASHES = 3


def chain_order(name: str) -> tuple[int, str]:
    """Sidecars replay base first, then deltas in segment order."""
    return (0 if name == "base" else 1, name)


@attrs.define
class Suspect:
    """A request in flight when the job died: put back alone, or set aside."""

    key: str
    record: dict[str, Any]
    crashes: int


@attrs.define
class LoadedJob:
    checkpoint: Checkpoint | None
    chain: dict[str, SidecarRef]
    journal_upto: int  # segments up to this number are in the checkpoint
    replay: Replay
    runs: int  # runs of the job before this one
    crashes: int  # of them, how many died in a row most recently
    corrupted: int  # newer checkpoints passed over
    suspects: list[Suspect] = attrs.field(factory=list)
    poison: list[Suspect] = attrs.field(factory=list)
    changed: set[str] = attrs.field(factory=set)  # pending ids whose record must be journaled again
    held: list[dict[str, Any]] = attrs.field(factory=list)  # "h" records: retries waiting for their backoff

    @property
    def resuming(self) -> bool:
        return self.checkpoint is not None or self.runs > 0

    @property
    def job_state(self) -> dict[str, Any]:
        return dict(self.checkpoint.data.job_state) if self.checkpoint is not None else {}


def requests_done(directory: Path) -> int:
    """Requests done in the job so far: the newest valid checkpoint's count plus the journal after it.

    Blocking and read-only (the supervisor's measure of progress between runs,
    including a run killed before its first checkpoint).
    """
    loaded = CheckpointStore(directory, job_id="").load_latest()
    state = loaded.checkpoint.data.job_state if loaded is not None else {}
    upto = int(state.get("journal_upto", 0))
    return int(state.get("requests_done", 0)) + count_done(Path(directory) / JOURNAL_DIR, after=upto)


def load_job(store: CheckpointStore, journal_dir: Path, poison_limit: int) -> LoadedJob:
    """Replay the newest valid checkpoint and the journal after it (blocking)."""
    loaded = store.load_latest()
    replay = Replay()
    checkpoint, chain, upto, corrupted = None, {}, 0, 0
    if loaded is not None:
        checkpoint, corrupted = loaded.checkpoint, len(loaded.skipped)
        chain = {name: ref for name, ref in loaded.sidecars.items() if name == "base" or name.startswith("delta-")}
        upto = int(checkpoint.data.job_state.get("journal_upto", 0))
        for name in sorted(chain, key=chain_order):
            replay.feed(store.sidecar_lines(chain[name]))
    elif store.entries():
        corrupted = len(store.entries())  # every checkpoint is damaged: the journal is all there is
    runs_before = replay.runs
    for number in segment_numbers(journal_dir):
        if number > upto:
            with segment_path(journal_dir, number).open("rb") as handle:
                replay.feed(read_lines(handle))
    tail_runs = replay.runs - runs_before
    state = checkpoint.data.job_state if checkpoint is not None else {}
    if checkpoint is None:
        runs, crashes = tail_runs, tail_runs
    else:
        # The run that wrote the checkpoint died unless it closed cleanly; every
        # run that started after it (its "run" line is in the tail) died too.
        runs = int(state.get("runs", 1)) + tail_runs
        crashes = (0 if state.get("clean_close") else int(state.get("crashes", 0)) + 1) + tail_runs
    job = LoadedJob(checkpoint=checkpoint, chain=chain, journal_upto=upto, replay=replay, runs=runs,
                    crashes=crashes, corrupted=corrupted)
    if crashes:
        _judge_suspects(job, poison_limit)
    # Retries waiting for their backoff go back through the retry middleware, not the scheduler.
    for key in [key for key, line in replay.pending.items() if line.startswith('{"h"')]:
        job.held.append(json.loads(replay.pending[key]))
        del replay.pending[key]
    _make_old()
    return job


def _make_old() -> None:
    """Move every object to the collector's oldest generation (O(1), nothing is traversed).

    The job was rebuilt in a thread that allocates few objects the collector
    tracks, so its big containers (a million pending lines, the fingerprints)
    are still in the youngest generation: the next young collections, run by
    the reactor thread, would each walk them all, stalling it for 0.1 s at a
    million requests. From the oldest generation only full collections see
    them, as they see Scrapy's own long-lived objects. Left alone if the
    application froze objects itself (``gc.unfreeze`` would undo that).
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def _judge_suspects(job: LoadedJob, limit: int) -> None:
    """Count one more death for the requests in flight at the last one; reset the others."""
    pending = job.replay.pending
    for key, line in pending.items():
        in_flight = key in job.replay.in_flight
        if not in_flight and CRASHES_KEY not in line:
            continue
        record = json.loads(line)
        meta = record["r"].setdefault("meta", {})
        crashes = int(meta.get(CRASHES_KEY, 0))
        if in_flight:
            crashes += 1
            meta[CRASHES_KEY] = crashes
            if crashes >= limit:
                job.poison.append(Suspect(key, record, crashes))
                continue
            if crashes >= 2:
                # A second death in a row: put back alone, so that the requests
                # in flight with it by chance do not climb with it.
                job.suspects.append(Suspect(key, record, crashes))
                continue
        else:
            # Not in flight this time: the series is broken, it is an ordinary request again.
            meta.pop(CRASHES_KEY, None)
        # A first death is usually not the request's fault (OOM, kill -9): put back as usual.
        pending[key] = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        job.changed.add(key)
    for suspect in job.poison + job.suspects:
        del pending[suspect.key]
    job.suspects.sort(key=lambda s: -s.crashes)  # the likeliest culprit first
