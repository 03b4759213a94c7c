"""The failure event log on real files: order, bounded retention, torn and garbage lines, permissions."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from scrapy_resilience.events.log import EVENTS_FILE, EventLog
from scrapy_resilience.jobdir.fileio import TMP_PREFIX
from scrapy_resilience.model.entities import FailureCategory, FailureEvent, FailureSeverity, RecoveryAction
from scrapy_resilience.model.serialization import event_to_line


def event(index: int) -> FailureEvent:
    return FailureEvent(
        severity=FailureSeverity.MEDIUM,
        category=FailureCategory.NETWORK,
        source="scrapy_resilience.retry",
        message=f"503 Service Unavailable #{index}",
        context={"url": f"http://127.0.0.1/product/{index}.html", "attempt": index},
        recovery_action=RecoveryAction.RETRY,
    )


def messages(events: list[FailureEvent]) -> list[str]:
    return [item.message for item in events]


def line_count(directory: Path) -> int:
    return (directory / EVENTS_FILE).read_bytes().count(b"\n")


def test_append_then_read_in_order(tmp_path: Path) -> None:
    """Events read back equal to what was appended, oldest first, one JSON line each."""
    log = EventLog(tmp_path)
    appended = [event(index) for index in range(5)]
    for item in appended:
        log.append(item)
    assert log.read() == appended
    assert log.skipped_lines == 0
    assert (tmp_path / EVENTS_FILE).read_text().splitlines() == [event_to_line(item) for item in appended]


def test_events_survive_a_new_instance(tmp_path: Path) -> None:
    """A restarted crawl appends after the events of the previous run."""
    EventLog(tmp_path).append(event(1))
    log = EventLog(tmp_path)
    log.append(event(2))
    assert messages(EventLog(tmp_path).read()) == [event(1).message, event(2).message]


def test_retention_keeps_the_newest_and_bounds_the_file(tmp_path: Path) -> None:
    """The file never holds more than 2 x retention lines, and after trimming the newest `retention` remain."""
    log = EventLog(tmp_path, retention=5)
    for index in range(37):
        log.append(event(index))
        assert line_count(tmp_path) <= 10
    kept = log.read()
    assert messages(kept)[-5:] == [event(index).message for index in range(32, 37)]
    assert len(kept) <= 10


def test_torn_last_line_is_skipped_and_not_glued(tmp_path: Path) -> None:
    """A line torn by a crash is skipped on reading, and the next append starts a fresh line."""
    log = EventLog(tmp_path)
    log.append(event(1))
    with open(tmp_path / EVENTS_FILE, "ab") as file:
        file.write(event_to_line(event(2)).encode()[:40])
    assert messages(EventLog(tmp_path).read()) == [event(1).message]

    restarted = EventLog(tmp_path)
    restarted.append(event(3))
    assert messages(restarted.read()) == [event(1).message, event(3).message]
    assert restarted.skipped_lines == 1


def test_garbage_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    """Invalid JSON, invalid UTF-8, a JSON non-object and an invalid event are skipped, never fatal."""
    path = tmp_path / EVENTS_FILE
    good = [event_to_line(event(index)).encode() for index in range(3)]
    bad_event = event_to_line(event(9)).replace('"medium"', '"apocalyptic"').encode()
    damaged = [good[0], b"{not json", b"\xff\xfe\x00", good[1], b"[1, 2]", bad_event, good[2]]
    path.write_bytes(b"\n".join(damaged) + b"\n")
    log = EventLog(tmp_path)
    assert messages(log.read()) == [event(index).message for index in range(3)]
    assert log.skipped_lines == 4


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    """A job without events reads as no events, and reading creates nothing."""
    log = EventLog(tmp_path / "job")
    assert log.read() == []
    assert not (tmp_path / "job").exists()


def test_file_and_folder_are_owner_only(tmp_path: Path) -> None:
    """The event log is created 0o600 in a 0o700 directory, whatever the umask."""
    old_umask = os.umask(0)
    try:
        log = EventLog(tmp_path / "job", retention=1)
        for index in range(3):  # the third append compacts: the rewritten file too
            log.append(event(index))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "job").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "job" / EVENTS_FILE).stat().st_mode) == 0o600


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    """Appends from several threads all land, each on its own line."""
    log = EventLog(tmp_path, retention=10_000)

    def append_many(offset: int) -> None:
        for index in range(200):
            log.append(event(offset + index))

    threads = [threading.Thread(target=append_many, args=(offset,)) for offset in (0, 1000, 2000, 3000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(log.read()) == 800
    assert log.skipped_lines == 0


def test_second_writer_follows_the_other_ones_compaction(tmp_path: Path) -> None:
    """When another writer rewrites the file, appends go to the new file, not the replaced one."""
    first, second = EventLog(tmp_path, retention=2), EventLog(tmp_path, retention=2)
    second.append(event(0))
    for index in range(1, 6):  # the fifth line makes `first` compact the file
        first.append(event(index))
    second.append(event(6))
    assert messages(EventLog(tmp_path).read())[-1] == event(6).message


def test_interrupted_compaction_leftover_is_removed(tmp_path: Path) -> None:
    """The temporary file of a compaction killed half-way is removed by the next writer; the log is intact."""
    EventLog(tmp_path).append(event(1))
    leftover = tmp_path / f"{TMP_PREFIX}0123abcd-{EVENTS_FILE}"
    leftover.write_bytes(event_to_line(event(1)).encode()[:30])
    log = EventLog(tmp_path)
    log.append(event(2))
    assert not leftover.exists()
    assert messages(log.read()) == [event(1).message, event(2).message]
