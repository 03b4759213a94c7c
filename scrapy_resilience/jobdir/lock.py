"""One crawl at a time in a job directory.

Two crawls writing the same job directory (a cron job started again while the
last run still works, a supervised crawl and one started by hand) would
interleave their journals and checkpoints, and the second one's repair of the
feed files would cut the first one's lines. The checkpoint extension holds an
exclusive ``flock`` on ``DIR/lock`` from start-up to the end of the crawl. The
kernel drops the lock when the process dies, however it dies, so a SIGKILL
never leaves a stale lock behind and the next run resumes at once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from scrapy_resilience.exceptions import JobLockedError
from scrapy_resilience.jobdir.fileio import FILE_MODE, ensure_private_dir

LOCK_FILE = "lock"  # in the job directory; holds the pid of the crawl holding it, for the error message


class JobLock:
    """``acquire()`` or raise ``JobLockedError``; ``release()`` (also when the process dies)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.directory)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JobLockedError(
                f"RESILIENCE_CHECKPOINT_DIR={str(self.directory)!r} is in use by another crawl (pid {holder}): "
                "wait for it to end, or give this crawl a directory of its own"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
