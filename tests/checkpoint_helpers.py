"""Helpers for the checkpoint and resume tests (not collected: no ``test_`` prefix).

- ``Crawl``: one ``scrapy crawl`` subprocess of example_project with a job
  directory and a JSON lines feed, its output in a log file.
- ``wait_for``: poll a condition with a bounded deadline.
- ``feed_skus``: the items of a JSON lines feed, as users read them.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESUME_RE = re.compile(r"(\d+) requests restored \((\d+) in flight when the job died")


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Return ``condition()``'s first truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def feed_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def feed_skus(path: Path) -> list[str]:
    """Every item's sku, in file order (a line that does not parse fails the test)."""
    return [json.loads(line)["sku"] for line in feed_lines(path)]


class Crawl:
    """``scrapy ARGS`` (``crawl catalogue``) in example_project with checkpoints in ``job``, items in ``feed``."""

    def __init__(self, env: Any, tmp: Path, *args: str, interval: float = 1,
                 settings: dict[str, Any] | None = None) -> None:
        self.env = env
        self.tmp = tmp
        self.args = args or ("crawl", "catalogue")
        self.job = tmp / "job"
        self.feed = tmp / "items.jsonl"
        self.settings = {
            "RESILIENCE_CHECKPOINT_DIR": str(self.job),
            "RESILIENCE_CHECKPOINT_INTERVAL": interval,
            "FEEDS": {str(self.feed): {"format": "jsonlines"}},
            "LOG_LEVEL": "INFO",
            **(settings or {}),
        }
        self.runs: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []

    def start(self, **extra: Any) -> subprocess.Popen[str]:
        log = self.tmp / f"run-{len(self.runs) + 1}.log"
        with log.open("w") as out:
            process = self.env.popen(*self.args, settings={**self.settings, **extra},
                                     stdout=out, stderr=subprocess.STDOUT)
        self.runs.append(process)
        self.logs.append(log)
        return process

    def run(self, timeout: float = 240, **extra: Any) -> str:
        """Run to the end; return its log."""
        process = self.start(**extra)
        process.wait(timeout=timeout)
        return self.logs[-1].read_text()

    def kill_after_items(self, items: int, timeout: float = 120) -> None:
        """Start a run and SIGKILL it once the feed has ``items`` more lines."""
        before = len(feed_lines(self.feed))
        process = self.start()
        wait_for(lambda: len(feed_lines(self.feed)) >= before + items or process.poll() is not None,
                 timeout=timeout, what=f"{items} new items")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def log(self, run: int = -1) -> str:
        return self.logs[run].read_text()

    def restored(self, run: int = -1) -> tuple[int, int]:
        """(requests restored, of which in flight when the job died) from a run's resume line."""
        match = RESUME_RE.search(self.log(run))
        assert match, f"run {run} did not resume:\n{self.log(run)[-3000:]}"
        return int(match.group(1)), int(match.group(2))


def stats_of(log: str) -> dict[str, Any]:
    """The final stats dump of a ``scrapy crawl`` log (numbers and strings only)."""
    dump = log[log.rindex("Dumping Scrapy stats:"):]
    return {key: _value(value) for key, value in re.findall(r"'([^']+)': ([^,\n}]+)", dump)}


def _value(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text.replace("'", '"'))
    except ValueError:
        return text
