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

Lines are appended in the order the changes happened, by the reactor thread
straight into the page cache (no fsync: the page cache survives a SIGKILL, and
the checkpoint fsyncs what it seals, in a worker thread), so any prefix of the
journal is a state the crawl really went through; a kill loses at most the
unflushed tail and tears at most the last line, which the replay skips. A
checkpoint *seals* the current segment (rotation) and stores sealed segments
as delta sidecars; now and then the deltas are compacted into a base (pending
requests and fingerprints only). Resume replays base + deltas + the segments
written after the checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from scrapy_resilience.jobdir.fileio import FILE_MODE, ensure_private_dir, read_lines

logger = logging.getLogger(__name__)

JOURNAL_DIR = "journal"  # the journal's folder in the job directory
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


def count_settled(directory: Path, *, after: int) -> tuple[int, int]:
    """The "done" and "set aside" lines of the segments numbered above ``after`` (blocking, read-only)."""
    done = set_aside = 0
    for number in segment_numbers(directory):
        if number > after:
            with segment_path(directory, number).open("rb") as segment:
                for line in read_lines(segment):
                    done += line.startswith(b'{"d":')
                    set_aside += line.startswith(b'{"p":')
    return done, set_aside


class JournalWriter:
    """Appends lines to the current segment; seals segments from one worker thread.

    ``write`` appends at once, on the caller's thread: an append of a few
    kilobytes goes to the page cache, as Scrapy's own feed exports do, and
    costs a few microseconds. Handing each one to a thread cost far more: the
    two threads passed the GIL back and forth dozens of times a second (a few
    percent of a fast crawl's CPU). ``rotate`` starts the next segment at
    once and leaves the fsync and close of the sealed one to the worker,
    returning the sealed segment's number.
    """

    def __init__(self, directory: Path, first_segment: int) -> None:
        self.directory = directory
        self.segment = first_segment
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resilience-journal")
        ensure_private_dir(self.directory)
        self._fd: int | None = self._open(first_segment)
        self._failed = False

    def _open(self, number: int) -> int:
        return os.open(segment_path(self.directory, number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)

    def write(self, lines: list[str]) -> None:
        """Append ``lines``."""
        assert self._fd is not None
        data = memoryview(("\n".join(lines) + "\n").encode())
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            if not self._failed:  # once: a full disk would otherwise fill the log too
                logger.error("Cannot write the frontier journal (%s): a crash now loses the frontier since the "
                             "last checkpoint", exc)
            self._failed = True

    def rotate(self) -> Future[int]:
        """Seal the current segment (after what was written) and start the next; the future gives its number."""
        assert self._fd is not None
        sealed, sealed_fd = self.segment, self._fd
        self.segment += 1
        self._fd = self._open(self.segment)
        return self._executor.submit(self._seal, sealed, sealed_fd)

    @staticmethod
    def _seal(number: int, fd: int) -> int:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return number

    def close(self) -> None:
        """Close the file once the sealing of earlier segments is done (blocking)."""
        self._executor.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Shards:
    """A str -> str mapping split into many small dicts.

    The frontier of a big crawl is rebuilt (and compacted) in a worker thread
    while the crawl runs; one dict of a million entries would resize, and be
    freed, in single C calls that hold the GIL for a tenth of a second or more,
    stalling the reactor thread. Small shards keep each such step short.
    """

    SHARDS = 1024

    def __init__(self) -> None:
        self._shards: list[dict[str, str]] = [{} for _ in range(self.SHARDS)]
        self._last = 0  # where popitem looks first

    def _shard(self, key: str) -> dict[str, str]:
        return self._shards[hash(key) & (self.SHARDS - 1)]

    def __setitem__(self, key: str, value: str) -> None:
        self._shard(key)[key] = value

    def __getitem__(self, key: str) -> str:
        return self._shard(key)[key]

    def __delitem__(self, key: str) -> None:
        del self._shard(key)[key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._shard(key)

    def __len__(self) -> int:
        return sum(len(shard) for shard in self._shards)

    def __bool__(self) -> bool:
        return any(self._shards)

    def pop(self, key: str, *default: str | None) -> str | None:
        return self._shard(key).pop(key, *default)

    def popitem(self) -> tuple[str, str]:
        for index in range(self._last, self.SHARDS):
            if self._shards[index]:
                self._last = index
                return self._shards[index].popitem()
        raise KeyError("popitem(): no pending request left")

    def items(self) -> Iterator[tuple[str, str]]:
        for shard in self._shards:
            yield from shard.items()

    def values(self) -> Iterator[str]:
        for shard in self._shards:
            yield from shard.values()

    def keys(self) -> Iterator[str]:
        for shard in self._shards:
            yield from shard.keys()

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def clear(self) -> None:
        for shard in self._shards:
            shard.clear()  # one small dict at a time: the GIL is released in between


@attrs.define
class Replay:
    """The frontier rebuilt from journal lines, in order."""

    pending: Shards = attrs.field(factory=Shards)  # id -> its latest "a"/"h" line
    in_flight: set[str] = attrs.field(factory=set)  # ids in the downloader when the journal ended
    seen: set[bytes] = attrs.field(factory=set)  # not kept when replayed with fingerprints=False
    start_seen: set[bytes] = attrs.field(factory=set)
    fingerprints: bool = True
    runs: int = 0  # "run" lines replayed
    done: int = 0  # "d" lines replayed
    run_starts: list[int] = attrs.field(factory=list)  # ``done`` when each "run" line was replayed
    set_aside: int = 0
    torn: int = 0  # lines that did not parse (a torn tail after a kill)

    def feed(self, lines: Iterable[bytes]) -> None:
        # Lines are parsed by position, not with json.loads: every line this
        # package writes starts with '{"<op>":"<id or hex>"'. A million dicts
        # would also wake Python's garbage collector, whose full passes over
        # a big frontier stall the reactor thread (the GIL is shared).
        pending, in_flight = self.pending, self.in_flight
        for raw in lines:
            if not raw.endswith(b"\n"):
                # Every line is written with its newline: without one it was torn by a kill.
                self.torn += raw.strip() != b""
                continue
            op = raw[2:4]
            if op == b"ru":
                self.runs += 1
                self.run_starts.append(self.done)
                # Requests in flight in an earlier run are pending again: a
                # new run starts with an empty downloader.
                in_flight.clear()
                continue
            end = raw.find(b'"', 6)
            if end < 0 or raw[:2] != b'{"':
                self.torn += 1  # not a line of ours: skipped like a torn one
                continue
            value = raw[6:end]
            if op == b'a"' or op == b'h"':
                key = value.decode()
                pending[key] = raw[:-1].decode()
                in_flight.discard(key)
            elif op == b'f"':
                if self.fingerprints:
                    self.seen.add(bytes.fromhex(value.decode()))
            elif op == b'x"':
                in_flight.add(value.decode())
            elif op == b'd"':
                self.done += 1
                key = value.decode()
                pending.pop(key, None)
                in_flight.discard(key)
            elif op == b's"':
                if self.fingerprints:
                    self.start_seen.add(bytes.fromhex(value.decode()))
            elif op == b'p"':
                key = value.decode()
                pending.pop(key, None)
                in_flight.discard(key)
                self.set_aside += 1

    def frontier_lines(self) -> Iterator[bytes]:
        """The compacted frontier: pending requests, and the ids in flight."""
        for line in self.pending.values():
            yield line.encode() + b"\n"
        for key in self.in_flight:  # poison detection needs them if the crawl dies later
            yield dumps({"x": key}).encode() + b"\n"


def fingerprint_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The "f" and "s" lines among ``lines``, streamed (compaction keeps every one, no set needed)."""
    for raw in lines:
        if raw.startswith((b'{"f":"', b'{"s":"')) and raw.endswith(b"\n"):
            yield raw
