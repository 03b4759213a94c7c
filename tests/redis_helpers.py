"""Helpers for the scrapy-redis tests and benchmark (not collected: no ``test_`` prefix).

- ``RedisServer``: Debian's ``redis-server`` as a child process on 127.0.0.1,
  a free port, append-only file on; killed (SIGKILL) and started again from it.
- ``Workers``: ``scrapy crawl catalogue`` worker processes of example_project
  sharing one scrapy-redis job, each with its own JSON lines feed and log.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import redis
from checkpoint_helpers import feed_skus, wait_for

SCRAPY_REDIS = {
    "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
    "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
    "SCHEDULER_PERSIST": True,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; ``kill`` and ``start`` again keep its port and its AOF."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(port=self.port)

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--appendonly", "yes", "--save", "", "--protected-mode", "no",
                "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._ready, timeout=30, what="redis-server to answer PING")

    def _ready(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.exceptions.ConnectionError:  # not listening yet, or loading its AOF
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.client.connection_pool.disconnect()


class Workers:
    """Worker processes (``scrapy crawl catalogue``) of one scrapy-redis job, numbered as started."""

    def __init__(self, env: Any, tmp: Path, redis_url: str, settings: dict[str, Any] | None = None) -> None:
        self.env = env
        self.tmp = tmp
        self.settings = {**SCRAPY_REDIS, "REDIS_URL": redis_url, "LOG_LEVEL": "INFO", **(settings or {})}
        self.processes: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        self.feeds: list[Path] = []

    def start(self, count: int = 1, *, supervised: bool = False, **extra: Any) -> list[subprocess.Popen[str]]:
        """Start ``count`` workers (``scrapy resilience crawl``, each with its own job directory, if ``supervised``)."""
        started = []
        for _ in range(count):
            n = len(self.processes) + 1
            feed, log = self.tmp / f"items-{n}.jsonl", self.tmp / f"worker-{n}.log"
            settings = {**self.settings, "FEEDS": {str(feed): {"format": "jsonlines"}}, **extra}
            command = ("crawl", "catalogue")
            if supervised:
                command = ("resilience", "crawl", "catalogue")
                settings["RESILIENCE_CHECKPOINT_DIR"] = str(self.tmp / f"job-{n}")
            with log.open("w") as out:
                process = self.env.popen(*command, settings=settings, stdout=out, stderr=subprocess.STDOUT)
            self.processes.append(process)
            self.logs.append(log)
            self.feeds.append(feed)
            started.append(process)
        return started

    def items(self, n: int) -> int:
        """Items in worker ``n``'s feed so far (1-based)."""
        feed = self.feeds[n - 1]
        return len(feed.read_text().splitlines()) if feed.exists() else 0

    def total_items(self) -> int:
        return sum(self.items(n) for n in range(1, len(self.feeds) + 1))

    def wait(self, timeout: float = 240) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL every worker still running (a failed test must not leave them behind)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)

    def log(self, n: int) -> str:
        return self.logs[n - 1].read_text()

    def skus(self) -> list[str]:
        """Every item of every worker, as users read their feeds."""
        return [sku for feed in self.feeds for sku in feed_skus(feed)]
