"""The supervisor, with real processes: restarts after SIGKILL, crash loops, aborts, start-up failures, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from scrapy_resilience.cli.jobview import JobSnapshot, read_snapshot
from scrapy_resilience.cli.parser import main
from scrapy_resilience.cli.supervisor import Outcome, describe_exit, plan_crawl

REPO = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).resolve().parent / "projects" / "supervised"
WAIT = 300  # seconds: the bound on every wait for a process, never a sleep


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the test project, so that `crawls/<spider>` and feeds land in tmp_path."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__", "crawls"))
    return copy


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_stray_processes() -> Any:
    """A failed test must not leave a supervisor or a crawl running: kill what is left, children first."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.kill()
        process.wait(timeout=WAIT)


PYTHON_M = ("-m", "scrapy_resilience")
SCRAPY_COMMAND = ("-m", "scrapy", "resilience")


def supervise(project: Path, *args: str, entry: tuple[str, ...] = PYTHON_M) -> subprocess.Popen[str]:
    """Start `python -m scrapy_resilience crawl ARGS` in ``project``; its output goes to project/supervisor.log."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.pop("SCRAPY_SETTINGS_MODULE", None)
    argv = [sys.executable, *entry, "crawl", "--restart-delay", "0.05", *args]
    with open(project / "supervisor.log", "w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(argv, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    _started.append(process)
    return process


def finish(process: subprocess.Popen[str], project: Path) -> tuple[int, str]:
    """Wait (bounded) for the supervisor; return its exit code and everything it and its children printed."""
    code = process.wait(timeout=WAIT)
    return code, (project / "supervisor.log").read_text()


def runs(log: str) -> int:
    return len(re.findall(r"\] INFO: Run \d+: ", log))


def wait_for(condition: Any, what: str) -> Any:
    """Poll ``condition`` until it returns something true, within WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def expected_skus(site: str, pages: int) -> set[str]:
    """The live products linked from the first ``pages`` list pages (dead links excluded)."""
    skus = set()
    for number in range(1, pages + 1):
        with urllib.request.urlopen(f"{site}/catalogue/page-{number}.html", timeout=30) as response:
            html = response.read().decode()
        skus.update(re.findall(r"/product/(\d+)\.html", html))
    return skus


def scraped_skus(feed: Path) -> set[str]:
    return {json.loads(line)["sku"] for line in feed.read_text().splitlines() if line.strip()}


def test_sigkilled_child_is_resumed_and_the_crawl_finishes(project, demo_site):
    """SIGKILL of the child mid-crawl: restarted, resumed from the default crawls/<spider>, every item, exit 0."""
    process = supervise(
        project, "catalogue", "-a", f"site={demo_site.url}", "-a", "pages=4", "-o", "items.jsonl",
        "-s", "DOWNLOAD_DELAY=0.1", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
    )  # fmt: skip
    job = project / "crawls" / "catalogue"
    snapshot = wait_for(lambda: (s := read_snapshot(job)).done[0] >= 5 and s, "a checkpoint with progress")
    assert snapshot.close_reason is None, "the crawl finished before it could be killed"
    (child,) = psutil.Process(process.pid).children()
    child.send_signal(signal.SIGKILL)
    code, log = finish(process, project)
    assert code == Outcome.FINISHED, log
    assert "Run 1 killed by SIGKILL; restarting" in log and runs(log) == 2
    assert read_snapshot(job).close_reason == "finished"
    assert scraped_skus(project / "items.jsonl") == expected_skus(demo_site.url, 4)


def test_a_child_stopped_by_someone_else_is_resumed(project, demo_site):
    """SIGTERM sent to the child alone (not through the supervisor): it closes with `shutdown` and is restarted."""
    process = supervise(
        project, "catalogue", "-a", f"site={demo_site.url}", "-a", "pages=2", "-o", "items.jsonl",
        "-s", "DOWNLOAD_DELAY=0.1", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
    )  # fmt: skip
    wait_for(lambda: read_snapshot(project / "crawls" / "catalogue").done[0] >= 3, "a checkpoint with progress")
    (child,) = psutil.Process(process.pid).children()
    child.send_signal(signal.SIGTERM)
    code, log = finish(process, project)
    assert code == Outcome.FINISHED, log
    assert "Run 1 closed with shutdown; restarting" in log and runs(log) == 2
    assert scraped_skus(project / "items.jsonl") == expected_skus(demo_site.url, 2)


def test_a_resumable_close_is_restarted(project, demo_site):
    """A crawl closed for resilience_memory_exceeded is started again and finishes: exit 0 after two runs."""
    process = supervise(
        project, "catalogue", "-a", f"site={demo_site.url}", "-a", "pages=1",
        "-a", "close_once=resilience_memory_exceeded", "-o", "items.jsonl",
    )  # fmt: skip
    code, log = finish(process, project)
    assert code == Outcome.FINISHED, log
    assert "Run 1 closed with resilience_memory_exceeded; restarting" in log and runs(log) == 2
    assert scraped_skus(project / "items.jsonl") == expected_skus(demo_site.url, 1)


def test_a_spider_that_always_crashes_at_the_same_page_is_a_crash_loop(project, demo_site):
    """Dying at its first page run after run, never progressing: exit 3 after 3 runs (the default limit)."""
    process = supervise(
        project, "catalogue", "-a", f"site={demo_site.url}", "-a", "crash_path=/catalogue/page-1.html",
    )  # fmt: skip
    code, log = finish(process, project)
    assert code == Outcome.CRASH_LOOP, log
    assert "Crash loop: 3 deaths in a row without progress (last: killed by SIGKILL)" in log
    assert runs(log) == 3


@pytest.mark.timeout(240)
def test_a_poison_page_is_set_aside_and_the_job_finishes(project, start_demo_site):
    """A product page that kills every run, crash abort at 3: set aside at run 4, every other item, exit 0."""
    site = start_demo_site("--products", "200", "--dead-links", "0").url
    process = supervise(
        project, "catalogue", "-a", f"site={site}", "-a", "pages=10", "-a", "crash_path=/product/50.html",
        "-o", "items.jsonl", "-s", "RESILIENCE_ABORT_CONSECUTIVE_CRASHES=3",
    )  # fmt: skip
    code, log = finish(process, project)
    assert code == Outcome.FINISHED, log
    assert f"Poison request {site}/product/50.html set aside after 3 crashes in a row" in log
    assert "Stopping the crawl" not in log and runs(log) == 4
    assert scraped_skus(project / "items.jsonl") == {str(n) for n in range(1, 201)} - {"50"}


def test_a_job_that_dies_without_progress_with_the_abort_on_is_a_crash_loop(project, demo_site):
    """Crash abort at 3 and a job dying at its first page every run: a crash loop (exit 3), not an abort."""
    process = supervise(
        project, "catalogue", "-a", f"site={demo_site.url}", "-a", "crash_path=/catalogue/page-1.html",
        "-s", "RESILIENCE_ABORT_CONSECUTIVE_CRASHES=3",
    )  # fmt: skip
    code, log = finish(process, project)
    assert code == Outcome.CRASH_LOOP, log
    assert "Crash loop: 3 deaths in a row without progress (last: killed by SIGKILL)" in log
    assert runs(log) == 3


def test_the_abort_policy_exits_2_without_restart(project, demo_site):
    """A crawl closed by the failure-rate abort policy is not restarted: exit 2 after one run."""
    process = supervise(project, "deadsite", "-a", f"site={demo_site.url}", "-a", f"key={project.parent.name}")
    code, log = finish(process, project)
    assert code == Outcome.ABORTED, log
    assert "aborted by the abort policy (resilience_failure_rate)" in log and runs(log) == 1


def test_an_unknown_spider_fails_to_start(project):
    """A child that exits non-zero before any checkpoint failed to start: exit 1, no restart."""
    code, log = finish(supervise(project, "nosuchspider"), project)
    assert code == Outcome.FAILED_TO_START, log
    assert "failed to start" in log and runs(log) == 1


def test_a_bad_scrapy_setting_fails_to_start(project, demo_site):
    """A setting the child rejects at start-up: exit 1, no restart."""
    process = supervise(project, "catalogue", "-a", f"site={demo_site.url}", "-s", "CONCURRENT_REQUESTS=many")
    code, log = finish(process, project)
    assert code == Outcome.FAILED_TO_START, log
    assert runs(log) == 1


@pytest.mark.parametrize("entry", [PYTHON_M, SCRAPY_COMMAND], ids=["python-m", "scrapy-command"])
def test_a_bad_resilience_setting_is_refused_before_any_child(project, entry):
    """An invalid RESILIENCE_* value: exit 1 with the setting, value and rule on the last line; no child."""
    process = supervise(project, "catalogue", "-s", "RESILIENCE_RETRY_MAX_ATTEMPTS=0", entry=entry)
    code, log = finish(process, project)
    assert code == Outcome.FAILED_TO_START
    last = log.strip().splitlines()[-1]
    assert "RESILIENCE_RETRY_MAX_ATTEMPTS" in last and "'0'" in last and "1 to 100" in last
    assert runs(log) == 0


def test_sigint_stops_the_child_gracefully_without_restart(project, demo_site):
    """Ctrl-C (SIGINT to the supervisor) reaches the child once: it closes with `shutdown`, no restart, exit 130."""
    process = supervise(
        project, "catalogue", "-a", f"site={demo_site.url}", "-a", "pages=20",
        "-s", "DOWNLOAD_DELAY=0.2", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
    )  # fmt: skip
    job = project / "crawls" / "catalogue"
    wait_for(lambda: read_snapshot(job).sequence >= 1, "a first checkpoint")
    process.send_signal(signal.SIGINT)
    code, log = finish(process, project)
    assert code == 128 + signal.SIGINT, log
    assert read_snapshot(job).close_reason == "shutdown"
    assert "Stopped by SIGINT; not restarting" in log and runs(log) == 1


@pytest.fixture
def in_project(project, monkeypatch):
    """The working directory and environment of a Scrapy command run inside the test project."""
    monkeypatch.chdir(project)
    monkeypatch.setenv("SCRAPY_SETTINGS_MODULE", "supervised.settings")
    monkeypatch.syspath_prepend(str(project))
    return project


def test_plan_adds_the_default_directory_and_passes_every_option(in_project):
    """Without RESILIENCE_CHECKPOINT_DIR the child gets crawls/<spider>; every other argument is passed unchanged."""
    args = ["-s", "LOG_LEVEL=DEBUG", "catalogue", "-a", "site=http://x", "-o", "-:json", "--nolog"]
    plan = plan_crawl(args)
    assert plan.spider == "catalogue" and plan.directory == Path("crawls/catalogue")
    assert plan.command == [sys.executable, "-m", "scrapy", "crawl", *args,
                            "-s", "RESILIENCE_CHECKPOINT_DIR=crawls/catalogue"]  # fmt: skip
    assert plan.crash_limit == 3 and plan.job_id == "catalogue" and plan.addon_enabled
    assert not plan_crawl(["catalogue", "-s", "ADDONS={}"]).addon_enabled


def test_plan_keeps_the_users_directory_and_crash_limit(in_project):
    """A directory and crash limit given with -s (or in the spider's settings) are the ones used."""
    plan = plan_crawl(["catalogue", "-s", "RESILIENCE_CHECKPOINT_DIR=jobs/x", "-s", "RESILIENCE_JOB_ID=books",
                       "-s", "RESILIENCE_ABORT_CONSECUTIVE_CRASHES=5"])  # fmt: skip
    assert plan.directory == Path("jobs/x") and plan.crash_limit == 5 and plan.job_id == "books"
    assert not any(arg.startswith("RESILIENCE_CHECKPOINT_DIR=crawls") for arg in plan.command)
    assert plan_crawl(["deadsite"]).directory == Path("crawls/deadsite")


def test_progress_means_more_work_done_not_a_new_checkpoint():
    """A run makes progress only when requests done, items or poison set aside grow; a new sequence alone is not."""
    before = JobSnapshot(sequence=4, done=(10, 7, 0))
    assert not JobSnapshot(sequence=5, done=(10, 7, 0)).progress_since(before)
    assert JobSnapshot(sequence=5, done=(11, 7, 0)).progress_since(before)
    assert JobSnapshot(sequence=4, done=(10, 8, 0)).progress_since(before)
    assert JobSnapshot(sequence=5, done=(10, 7, 1)).progress_since(before)


def test_a_usage_error_of_crawl_is_a_failed_start(capsys):
    """`crawl --restart-delay -1` exits 1 (failed to start), not argparse's 2, which would read as "aborted"."""
    assert main(["crawl", "--restart-delay", "-1", "catalogue"]) == Outcome.FAILED_TO_START
    assert "--restart-delay" in capsys.readouterr().err


def test_exit_descriptions():
    """Deaths are described by signal name or exit status in the restart log."""
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with status 3"
