"""The frontier journal: an append-only log of frontier changes, and its replay.

Between two checkpoints every change of the frontier is one JSON line in a
segment file ``DIR/journal/segment-00000042.jsonl``:

=====================================  =============================================
``{"run": 3, "pid": ..., "t": ...}``    a run of the job started
``{"a": ID, "r": REQUEST}``             request ID is pending (scheduled), as REQUEST
``{"h": ID, "r": REQUEST, "n": T}``     request ID waits for its retry until epoch T
``{"x": ID}``                           request ID entered the downloader
``{"d": ID}``                           request ID is done (or dropped)
``{"p": ID}``                           request ID was set aside as a poison request
``{"f": HEX}`` / ``{"s": HEX}``         a fingerprint seen by the dupefilter / of a start request
=====================================  =============================================

Lines are written in the order the changes happened, by one writer thread
(no fsync: the page cache survives a SIGKILL, and the checkpoint fsyncs what it
seals), so any prefix of the journal is a state the crawl really went through;
a kill loses at most the unflushed tail and tears at most the last line, which
the replay skips. A checkpoint *seals* the current segment (rotation) and
stores sealed segments as delta sidecars; now and then the deltas are
compacted into a base (pending requests and fingerprints only). Resume replays
base + deltas + the segments written after the checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import attrs

from scrapy_resilience.store import FILE_MODE, ensure_private_dir

logger = logging.getLogger(__name__)

_SEGMENT_RE = re.compile(r"segment-(\d{8})\.jsonl")


def dumps(record: dict[str, Any]) -> str:
    """One journal line (without the newline)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def segment_numbers(directory: Path) -> list[int]:
    """The segment numbers present in ``directory``, ascending."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for name in names if (m := _SEGMENT_RE.fullmatch(name)))


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"segment-{number:08d}.jsonl"


class JournalWriter:
    """Appends lines to the current segment from one worker thread, in order.

    ``append`` only buffers (reactor thread, no I/O); ``flush`` hands the
    buffer to the worker; ``rotate`` closes the current segment (fsynced) and
    opens the next one, returning the sealed segment's number.
    """

    def __init__(self, directory: Path, first_segment: int) -> None:
        self.directory = directory
        self.segment = first_segment
        self._buffer: list[str] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resilience-journal")
        self._file: IO[bytes] | None = None
        self._executor.submit(self._open, first_segment).result()

    def _open(self, number: int) -> None:
        ensure_private_dir(self.directory)
        fd = os.open(segment_path(self.directory, number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        self._file = os.fdopen(fd, "ab", buffering=0)

    def append(self, line: str) -> None:
        self._buffer.append(line)

    @property
    def pending_lines(self) -> int:
        return len(self._buffer)

    def flush(self) -> Future[None]:
        """Write the buffered lines (in the worker thread); the future fires once written."""
        if not self._buffer:
            return self._executor.submit(lambda: None)
        data = ("\n".join(self._buffer) + "\n").encode()
        self._buffer = []
        return self._executor.submit(self._write, data)

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)

    def rotate(self) -> Future[int]:
        """Flush, seal the current segment and start the next; the future gives the sealed number."""
        self.flush()
        sealed = self.segment
        self.segment += 1
        return self._executor.submit(self._rotate, sealed, self.segment)

    def _rotate(self, sealed: int, following: int) -> int:
        assert self._file is not None
        os.fsync(self._file.fileno())
        self._file.close()
        self._open(following)
        return sealed

    def close(self) -> None:
        """Write what is buffered, close the file and stop the worker (blocking)."""
        self.flush()
        self._executor.submit(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@attrs.define
class Replay:
    """The frontier rebuilt from journal lines, in order."""

    pending: dict[str, str] = attrs.field(factory=dict)  # id -> its latest "a"/"h" line
    in_flight: set[str] = attrs.field(factory=set)  # ids in the downloader when the journal ended
    seen: set[bytes] = attrs.field(factory=set)
    start_seen: set[bytes] = attrs.field(factory=set)
    runs: int = 0  # "run" lines replayed
    set_aside: int = 0
    torn: int = 0  # lines that did not parse (a torn tail after a kill)

    def feed(self, lines: Iterable[bytes]) -> None:
        pending, in_flight = self.pending, self.in_flight
        for raw in lines:
            try:
                record = json.loads(raw)
            except ValueError:
                self.torn += raw.strip() != b""
                continue
            if "a" in record:
                key = record["a"]
                pending[key] = raw.decode().rstrip("\n")
                in_flight.discard(key)
            elif "f" in record:
                self.seen.add(bytes.fromhex(record["f"]))
            elif "x" in record:
                in_flight.add(record["x"])
            elif "d" in record:
                pending.pop(record["d"], None)
                in_flight.discard(record["d"])
            elif "h" in record:
                key = record["h"]
                pending[key] = raw.decode().rstrip("\n")
                in_flight.discard(key)
            elif "s" in record:
                self.start_seen.add(bytes.fromhex(record["s"]))
            elif "p" in record:
                pending.pop(record["p"], None)
                in_flight.discard(record["p"])
                self.set_aside += 1
            elif "run" in record:
                self.runs += 1
                # Requests in flight in an earlier run are pending again: a
                # new run starts with an empty downloader.
                in_flight.clear()

    def base_lines(self) -> Iterator[bytes]:
        """The compacted form: pending requests, those in flight, and every fingerprint."""
        for line in self.pending.values():
            yield line.encode() + b"\n"
        for key in self.in_flight:  # poison detection needs them if the crawl dies later
            yield dumps({"x": key}).encode() + b"\n"
        for fp in self.seen:
            yield b'{"f":"' + fp.hex().encode() + b'"}\n'
        for fp in self.start_seen:
            yield b'{"s":"' + fp.hex().encode() + b'"}\n'
