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
from typing import BinaryIO

from scrapy_resilience.models import FailureEvent
from scrapy_resilience.serialization import event_from_line, event_to_line
from scrapy_resilience.store import FILE_MODE, atomic_write, ensure_private_dir

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
        self._file: BinaryIO | None = None
        self._lines = 0  # lines in the file, as far as this process knows

    def append(self, event: FailureEvent) -> None:
        """Write one event as one line and flush it to the operating system."""
        line = event_to_line(event).rstrip("\n").encode() + b"\n"
        with self._lock:
            file = self._open()
            file.write(line)
            file.flush()
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
        """Close the append handle (appending again reopens it)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> BinaryIO:
        """The append handle, reopened when the file was replaced by another writer's compaction."""
        if self._file is not None:
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(self._file.fileno()).st_ino:
                return self._file
            self._file.close()
            self._file = None
        ensure_private_dir(self.directory)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # os.open's mode is masked by the umask
        file = open(fd, "ab+")  # noqa: SIM115 - kept open across appends
        file.seek(0)
        content = file.read()
        self._lines = content.count(b"\n")
        if content and not content.endswith(b"\n"):
            # A crash tore the last line: end it, so the next event is not glued to it.
            file.write(b"\n")
            self._lines += 1
        self._file = file
        return file

    def _read(self) -> tuple[list[FailureEvent], int]:
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        events, skipped = [], 0
        for raw in content.splitlines():
            if not raw.strip():
                continue
            try:
                events.append(event_from_line(raw.decode()))
            except (ValueError, TypeError, KeyError) as exc:  # UnicodeDecodeError is a ValueError
                logger.debug("Skipping a damaged event line: %s", exc)
                skipped += 1
        return events, skipped

    def _compact(self) -> None:
        """Rewrite the file atomically with the newest ``retention`` valid events."""
        events, _ = self._read()
        kept = events[-self.retention :]
        atomic_write(self.path, (event_to_line(event).rstrip("\n").encode() + b"\n" for event in kept))
        self._lines = len(kept)
        if self._file is not None:
            self._file.close()
            self._file = None
