"""SIGKILL a real process while it writes checkpoints: the newest committed checkpoint always loads."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scrapy_resilience.jobdir.fileio import TMP_PREFIX
from scrapy_resilience.jobdir.store import CheckpointStore
from scrapy_resilience.model.entities import CheckpointStatus

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).parents[1] / "store_writer.py"
KILLS = 25
LINE_DEADLINE = 120.0  # seconds for one line of the writer on a busy machine; only a hang reaches it

sys.path.insert(0, str(WRITER.parent))
from store_writer import RETENTION, pending_lines  # noqa: E402


class Writer:
    """The writer subprocess and its stdout lines, read by a thread so that waits can be bounded."""

    def __init__(self, directory: Path, mode: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), str(directory), mode], stdout=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.committed = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def next_line(self) -> str | None:
        """The next line (None at end of output), waiting at most LINE_DEADLINE."""
        line = self.lines.get(timeout=LINE_DEADLINE)
        if line is not None and line.startswith("COMMITTED "):
            self.committed = int(line.split()[1])
        return line

    def kill(self) -> None:
        """SIGKILL, then collect every line it printed before dying."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=LINE_DEADLINE)
        while self.next_line() is not None:
            pass
        self._reader.join(timeout=LINE_DEADLINE)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.mark.timeout(900)
def test_sigkill_at_random_instants_keeps_every_committed_checkpoint(tmp_path: Path) -> None:
    """After each of many SIGKILLs mid-write, the newest committed checkpoint loads intact with its sidecars."""
    rng = random.Random(20250127)
    last_committed = awaited = 0
    for round_number in range(KILLS):
        # The last round waits for a commit, whose sweep leaves only what is in flight at the kill.
        commits = max(rng.randrange(4), round_number == KILLS - 1)
        awaited += commits
        writer = Writer(tmp_path, "gzip" if round_number % 2 else "plain")
        try:
            assert writer.next_line() == "STARTED"
            for _ in range(commits):
                line = writer.next_line()
                assert line is not None and line.startswith("COMMITTED ")
            # The kill instant: somewhere inside the next sidecar or manifest write.
            time.sleep(rng.uniform(0.0, 0.15))
        finally:
            writer.kill()
        assert writer.committed == 0 or writer.committed > last_committed  # sequences never reused
        last_committed = max(last_committed, writer.committed)

        store = CheckpointStore(tmp_path, job_id="crash-test")
        loaded = store.load_latest()
        if last_committed == 0:
            continue
        assert loaded is not None
        assert loaded.skipped == []
        sequence = loaded.checkpoint.sequence_number
        assert sequence >= last_committed
        assert loaded.checkpoint.metadata.completed_items == sequence
        with store.open_sidecar(loaded.sidecars["pending"]) as handle:
            assert handle.read() == b"".join(pending_lines(sequence))
        assert all(entry.status is CheckpointStatus.COMPLETED for entry in store.entries())
    assert last_committed >= awaited  # the kills did land among real writes
    names = os.listdir(tmp_path / "checkpoints")
    assert sum(name.startswith(TMP_PREFIX) for name in names) <= 1
    assert sum(name.startswith("checkpoint-") for name in names) <= RETENTION + 1
