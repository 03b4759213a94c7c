"""Atomic, owner-only file writing for the job directory.

A file written here is either absent (or its old self) or complete, whatever
instant the process dies at: temporary file in the same directory, flush and
fsync, rename over the target, fsync of the directory (so the rename survives
a power cut too). Files are 0o600 and directories 0o700, whatever the umask:
they hold URLs, cookies and browser storage.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700  # job files hold URLs, cookies and browser storage: owner only
FILE_MODE = 0o600
TMP_PREFIX = ".tmp-"
# Level 1: sidecars are JSON lines, which shrink several-fold even at the
# fastest level, and a typical checkpoint must be written within 100 ms.
GZIP_LEVEL = 1
BLOCK_SIZE = 1 << 20  # callers stream small chunks (one line each); hash and write in blocks; read in blocks too


# Temporary files being written by this process right now: a garbage
# collector removes every other temporary file, the leftovers of a crash.
_inflight: set[str] = set()
_inflight_lock = threading.Lock()


def inflight_temporaries() -> frozenset[str]:
    """Names of the temporary files this process is writing right now (not crash leftovers)."""
    with _inflight_lock:
        return frozenset(_inflight)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0o700 (existing ones are left as they are)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        directory.chmod(DIR_MODE)  # mkdir's mode is masked by the umask


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _HashingSink:
    """A write-only file wrapper that hashes and counts the bytes that reach the disk."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def _blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= BLOCK_SIZE:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def atomic_write(path: Path, chunks: Iterable[bytes], *, compress: bool = False) -> tuple[str, int]:
    """Write ``chunks`` to ``path`` atomically (0o600); return the SHA-256 hex and size of the stored bytes.

    ``path`` either keeps its old content or gets the whole new one, whatever
    instant the process dies at, and the new content survives a power cut.
    """
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    with _inflight_lock:
        _inflight.add(tmp.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        with open(fd, "wb") as raw:
            os.fchmod(fd, FILE_MODE)  # os.open's mode is masked by the umask
            sink = _HashingSink(raw)
            if compress:
                # mtime=0: the same content gives the same bytes, hence the same hash.
                with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:  # type: ignore[arg-type]
                    for block in _blocks(chunks):
                        gz.write(block)
            else:
                for block in _blocks(chunks):
                    sink.write(block)
            raw.flush()
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        with _inflight_lock:
            _inflight.discard(tmp.name)
    fsync_dir(path.parent)
    return sink.sha256.hexdigest(), sink.size


def read_lines(handle: BinaryIO) -> Iterator[bytes]:
    """The lines of ``handle``, each with its newline (a torn last one without), read a block at a time.

    Iterating over a file line by line in a worker thread stalled the reactor
    thread for up to a third of a second at a time on a million lines
    (measured: the GIL changes hands badly around the small buffered reads);
    big reads split in memory do not.
    """
    rest = b""
    while chunk := handle.read(BLOCK_SIZE):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(BLOCK_SIZE):
            digest.update(block)
    return digest.hexdigest()
