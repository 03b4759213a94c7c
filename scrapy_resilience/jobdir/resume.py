"""Reading a job directory back: the newest valid checkpoint, its journal, the runs that died.

``load_job`` (blocking, run off the reactor thread) replays the checkpoint's
sidecars (a compacted base and delta segments) and then the journal segments
written after it, so a crawl killed between two checkpoints redoes almost
nothing. It also counts the job's deaths in a row without progress (what
``RESILIENCE_ABORT_CONSECUTIVE_CRASHES`` judges, as the supervisor's crash loop
does) and judges poison requests: a request that was in flight each time the
job died, ``limit`` runs in a row, is set aside instead of being put back.

A run *makes progress* when it journals a request done; a run that closed
cleanly did not die. A poison request set aside ends the streak of deaths it
caused: the run that sets it aside starts from 0, so a crawl cured of its
poison page goes on instead of being aborted for the deaths the poison caused.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import attrs

from scrapy_resilience import stats
from scrapy_resilience.jobdir.fileio import read_lines
from scrapy_resilience.jobdir.journal import JOURNAL_DIR, Replay, count_settled, segment_numbers, segment_path
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
    crashes: int  # deaths in a row without progress before this run; 0 once a poison request is set aside
    died: bool  # the last run died (did not close cleanly)
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


def streak_after(streak: int, progressed: bool) -> int:
    """Deaths in a row without progress once one more run died: one more, or none if that run made progress.

    The one rule of both the supervisor's crash loop and ``load_job``. A run
    that made progress before it died ends the streak instead of starting
    one: so a poison request, which a run reaches after doing other work,
    is set aside (at its ``limit``-th death) before its deaths make a crash
    loop, while a job that dies before doing anything loops at ``limit``.
    """
    return 0 if progressed else streak + 1


def requests_settled(directory: Path) -> tuple[int, int]:
    """Requests done and poison requests set aside so far: the newest checkpoint's, plus the journal's after it.

    Blocking and read-only (the supervisor's measure of progress between runs,
    including a run killed before its first checkpoint).
    """
    loaded = CheckpointStore(directory, job_id="").load_latest()
    state = loaded.checkpoint.data.job_state if loaded is not None else {}
    counters = state.get("stats")
    set_aside = int(counters.get(stats.POISON_SET_ASIDE, 0) or 0) if isinstance(counters, dict) else 0
    done, later = count_settled(Path(directory) / JOURNAL_DIR, after=int(state.get("journal_upto", 0)))
    return int(state.get("requests_done", 0)) + done, set_aside + later


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
    runs_before, done_before = replay.runs, replay.done
    for number in segment_numbers(journal_dir):
        if number > upto:
            with segment_path(journal_dir, number).open("rb") as handle:
                replay.feed(read_lines(handle))
    # Requests done in each stretch of the tail: the rest of the checkpoint's
    # run, then each run started after it (a run begins with its "run" line).
    bounds = [done_before, *replay.run_starts[runs_before:], replay.done]
    done_in = [end - start for start, end in itertools.pairwise(bounds)]
    state = checkpoint.data.job_state if checkpoint is not None else {}
    runs = (int(state.get("runs", 1)) if checkpoint is not None else 0) + len(done_in) - 1
    crashes = 0
    died = checkpoint is not None and not state.get("clean_close")
    if died:
        # The run that wrote the checkpoint died; it progressed before the checkpoint or after it.
        crashes = streak_after(int(state.get("crashes", 0)), bool(state.get("progressed")) or done_in[0] > 0)
    for done in done_in[1:]:  # every later run died: a clean close writes a checkpoint
        died = True
        crashes = streak_after(crashes, done > 0)
    job = LoadedJob(checkpoint=checkpoint, chain=chain, journal_upto=upto, replay=replay, runs=runs,
                    crashes=crashes, died=died, corrupted=corrupted)
    if died:  # count one more death for the requests the last run had in flight
        _judge_suspects(job, poison_limit)
    if job.poison:
        job.crashes = 0  # the cure ends the streak of deaths the poison caused
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
