"""The failure events of a job, as JSON lines in ``DIR/events.jsonl``.

Appending is cheap (one write and a flush, no fsync): events are an aid for
people, not state a resume depends on, and they arrive in bursts during
outages. The file keeps between ``retention`` and ``2 * retention`` lines: when
it passes the upper bound it is rewritten atomically with the newest
``retention``, so the cost of trimming is spread over many appends. Reading
never raises on damage: a line torn by a crash, or any line that is not a valid
FailureEvent, is skipped and counted.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from scrapy_resilience.jobdir.fileio import (
    FILE_MODE,
    TMP_PREFIX,
    atomic_write,
    ensure_private_dir,
    inflight_temporaries,
)
from scrapy_resilience.model.entities import FailureEvent
from scrapy_resilience.model.serialization import event_from_line, event_to_line

logger = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"


class EventLog:
    """Append-only, bounded, crash-tolerant log of FailureEvents. Blocking; thread-safe."""

    def __init__(self, directory: str | os.PathLike[str], *, retention: int = 1000) -> None:
        if retention < 1:
            raise ValueError(f"retention must be at least 1, got {retention}")
        self.directory = Path(directory)
        self.path = self.directory / EVENTS_FILE
        self.retention = retention
        self.skipped_lines = 0  # lines the last read() passed over
        self._lock = threading.Lock()
        self._lines: int | None = None  # lines in the file, as far as this process knows

    def append(self, event: FailureEvent) -> None:
        """Write one event as one line, straight to the operating system (no fsync)."""
        line = event_to_line(event).encode() + b"\n"
        with self._lock:
            if self._lines is None:
                ensure_private_dir(self.directory)
                self._remove_leftovers()
                self._lines = self._count_lines()
            # Opened per append, with O_APPEND: the line lands whole at the end
            # even when another process (or its compaction) touched the file.
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # os.open's mode is masked by the umask
                end = os.fstat(fd).st_size
                if end and os.pread(fd, 1, end - 1) != b"\n":
                    # A crash tore the last line: end it, so this event is not glued to it.
                    line = b"\n" + line
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self._lines += 1
            if self._lines > 2 * self.retention:
                self._compact()

    def read(self) -> list[FailureEvent]:
        """Every readable event, oldest first; damaged lines are skipped and counted in ``skipped_lines``."""
        with self._lock:
            events, skipped = self._read()
            self.skipped_lines = skipped
            return events

    def close(self) -> None:
        """Nothing to release (each append opens and closes the file); kept for callers that close logs."""

    def _remove_leftovers(self) -> None:
        """Remove the temporary file of a compaction that a crash interrupted."""
        busy = inflight_temporaries()
        for leftover in self.directory.glob(f"{TMP_PREFIX}*-{EVENTS_FILE}"):
            if leftover.name not in busy:
                leftover.unlink(missing_ok=True)

    def _count_lines(self) -> int:
        try:
            return self.path.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def _read(self) -> tuple[list[FailureEvent], int]:
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        events, skipped = [], 0
        for raw in content.split(b"\n"):
            if not raw.strip():
                continue
            try:
                events.append(event_from_line(raw.decode()))
            except ValueError as exc:  # bad JSON, bad UTF-8, not a valid FailureEvent
                logger.debug("Skipping a damaged event line: %s", exc)
                skipped += 1
        return events, skipped

    def _compact(self) -> None:
        """Rewrite the file atomically with the newest ``retention`` valid events."""
        events, _ = self._read()
        kept = events[-self.retention :]
        atomic_write(self.path, (event_to_line(event).encode() + b"\n" for event in kept))
        self._lines = len(kept)
