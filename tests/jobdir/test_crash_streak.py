"""Deaths in a row without progress, read back from the journal; a poison request set aside ends the streak."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrapy_resilience.jobdir.journal import JOURNAL_DIR, dumps, segment_path
from scrapy_resilience.jobdir.resume import load_job, streak_after
from scrapy_resilience.jobdir.store import CheckpointStore


def write_runs(directory: Path, *runs: list[dict]) -> Path:
    """One journal segment per run (each starts with its "run" line), as the checkpoint extension writes them."""
    journal = directory / JOURNAL_DIR
    journal.mkdir(parents=True)
    for number, records in enumerate(runs, start=1):
        lines = [dumps({"run": number, "pid": 1, "t": 0.0}), *map(dumps, records)]
        segment_path(journal, number).write_text("".join(line + "\n" for line in lines))
    return journal


def request(key: str, crashes: int = 0) -> dict:
    """An "a" line; a request put back after deaths is journaled again with its count, as the extension does."""
    meta = {"resilience_crashes": crashes} if crashes else {}
    return {"a": key, "r": {"url": f"http://127.0.0.1/{key}", "callback": None, "meta": meta}}


def loaded(tmp_path: Path, *runs: list[dict], limit: int = 3):
    journal = write_runs(tmp_path, *runs)
    return load_job(CheckpointStore(tmp_path, job_id="job"), journal, limit)


def test_streak_rule():
    """A run that made progress ends the series, even if it died; a death without progress adds one."""
    assert streak_after(0, False) == 1
    assert streak_after(4, True) == 0
    assert streak_after(2, False) == 3


def test_deaths_after_progress_do_not_add_up(tmp_path):
    """Three runs that each finished a request before dying: no death without progress, not three."""
    runs = [[request(str(n)), {"x": str(n)}, {"d": str(n)}, request(f"next{n}"), {"x": f"next{n}"}] for n in range(3)]
    job = loaded(tmp_path, *runs, limit=5)
    assert (job.runs, job.crashes) == (3, 0)


def test_deaths_without_progress_add_up(tmp_path):
    """A run that progressed, then two that died before finishing anything: two in a row."""
    first = [request("1"), request("2"), {"x": "1"}, {"d": "1"}, {"x": "2"}]
    job = loaded(tmp_path, first, [request("2", 1), {"x": "2"}], [request("2", 2), {"x": "2"}], limit=5)
    assert (job.runs, job.crashes) == (3, 2)
    assert [suspect.key for suspect in job.suspects] == ["2"] and job.poison == []


@pytest.mark.parametrize("progress_between", [False, True], ids=["no-progress", "progress"])
def test_a_poison_request_set_aside_ends_its_streak(tmp_path, progress_between):
    """The request in flight at the 3rd death in a row is set aside, and the run that sets it aside starts at 0."""
    first = [request("1"), request("2"), request("3"), {"x": "1"}, {"x": "2"}]
    second = [request("1", 1), request("2", 1), {"x": "1"}, *([{"x": "2"}, {"d": "2"}] if progress_between else [])]
    third = [request("1", 2), {"x": "1"}, *([{"x": "3"}, {"d": "3"}] if progress_between else [])]
    job = loaded(tmp_path, first, second, third, limit=3)
    assert [suspect.key for suspect in job.poison] == ["1"]
    assert job.crashes == 0 and job.runs == 3
