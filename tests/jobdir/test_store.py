"""The checkpoint store on real files: atomic writes, corruption detection and fallback, retention, permissions."""

from __future__ import annotations

import gzip
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scrapy_resilience.exceptions import CheckpointCorruptedError
from scrapy_resilience.jobdir.fileio import TMP_PREFIX
from scrapy_resilience.jobdir.store import MAX_MANIFEST_BYTES, CheckpointStore, SidecarRef
from scrapy_resilience.model.entities import CheckpointData, CheckpointMetadata, CheckpointStatus, ProgressState
from scrapy_resilience.model.lifecycle import CheckpointPhase
from scrapy_resilience.model.serialization import compute_checksum

LINE = b'{"url": "https://example.com/product/%d.html", "method": "GET", "priority": 0, "meta": {"depth": 2}}\n'


def lines(count: int, start: int = 0) -> Iterator[bytes]:
    """Request-like JSON lines, streamed one by one as the checkpoint extension does."""
    return (LINE % index for index in range(start, start + count))


def commit(
    store: CheckpointStore, *, pending: int = 100, shared: dict[str, SidecarRef] | None = None, completed: int = 0
) -> int:
    """Write one checkpoint with a fresh "pending" sidecar (plus any shared ones); return its sequence."""
    sidecars = {**(shared or {}), "pending": store.write_sidecar("pending", lines(pending, completed))}
    checkpoint = store.commit(
        metadata=CheckpointMetadata(completed_items=completed),
        data=CheckpointData(job_state={"spider_state": {"n": completed}}, progress=ProgressState(total_count=pending)),
        sidecars=sidecars,
    )
    return checkpoint.sequence_number


def manifest(store: CheckpointStore, sequence: int) -> Path:
    (path,) = store.checkpoint_dir.glob(f"checkpoint-{sequence:06d}.json*")
    return path


def read_document(path: Path) -> dict:
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)


def write_document(path: Path, document: dict) -> None:
    raw = json.dumps(document).encode()
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def sidecar_path(store: CheckpointStore, sequence: int, name: str = "pending") -> Path:
    files = read_document(manifest(store, sequence))["data"]["job_state"]["sidecars"]
    return store.checkpoint_dir / files[name]["file"]


def _truncate(store: CheckpointStore, seq: int) -> None:
    path = manifest(store, seq)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(store: CheckpointStore, seq: int) -> None:
    manifest(store, seq).write_bytes(b"")


def _flip(store: CheckpointStore, seq: int) -> None:
    path = manifest(store, seq)
    flip_byte(path, path.stat().st_size // 2)


def _invalid_json(store: CheckpointStore, seq: int) -> None:
    path = manifest(store, seq)
    raw = b'{"version": "1.0.0", "id": '
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)


def _wrong_checksum(store: CheckpointStore, seq: int) -> None:
    path = manifest(store, seq)
    document = read_document(path)
    document["metadata"]["completed_items"] += 1  # content changed, checksum kept
    write_document(path, document)


def _future_major(store: CheckpointStore, seq: int) -> None:
    path = manifest(store, seq)
    document = read_document(path)
    document["version"] = "2.0.0"
    document["checksum"] = compute_checksum(document)  # a genuine document of a newer writer
    write_document(path, document)


def _missing_sidecar(store: CheckpointStore, seq: int) -> None:
    sidecar_path(store, seq).unlink()


def _altered_sidecar(store: CheckpointStore, seq: int) -> None:
    flip_byte(sidecar_path(store, seq), 10)  # same size: only the SHA-256 can tell


def _resized_sidecar(store: CheckpointStore, seq: int) -> None:
    path = sidecar_path(store, seq)
    path.write_bytes(path.read_bytes() + b"\n")


DAMAGES: dict[str, tuple[Callable[[CheckpointStore, int], None], str]] = {
    "truncated": (_truncate, "truncated"),
    "empty": (_empty, "empty file"),
    "flipped byte": (_flip, ""),  # JSON, UTF-8, gzip CRC or checksum: whichever notices first
    "invalid JSON": (_invalid_json, "invalid JSON"),
    "wrong checksum": (_wrong_checksum, "checksum mismatch"),
    "future major version": (_future_major, "2.0.0"),
    "missing sidecar": (_missing_sidecar, "is missing"),
    "altered sidecar": (_altered_sidecar, "SHA-256 does not match"),
    "resized sidecar": (_resized_sidecar, "bytes, the manifest says"),
}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.fixture(params=[False, True], ids=["plain", "gzip"])
def compress(request: pytest.FixtureRequest) -> bool:
    return request.param


def test_commit_then_load_round_trip(tmp_path: Path, compress: bool) -> None:
    """What commit returns is what load_latest loads, with its sidecars readable decompressed."""
    store = CheckpointStore(tmp_path, job_id="books", compress=compress)
    pending = store.write_sidecar("pending", lines(50))
    written = store.commit(
        metadata=CheckpointMetadata(total_items=50), data=CheckpointData(), sidecars={"pending": pending}
    )
    loaded = CheckpointStore(tmp_path, job_id="books").load_latest()
    assert loaded is not None
    assert loaded.checkpoint == written
    assert loaded.sidecars == {"pending": pending}
    assert loaded.skipped == []
    assert loaded.lifecycle.phase is CheckpointPhase.ACTIVE
    with store.open_sidecar(loaded.sidecars["pending"]) as handle:
        assert handle.read() == b"".join(lines(50))
    stored = (store.checkpoint_dir / pending.file).read_bytes()
    assert stored.startswith(b"\x1f\x8b") is compress
    assert manifest(store, 1).name.endswith(".json.gz" if compress else ".json")


def test_manifest_records_every_sidecar_under_its_checksum(tmp_path: Path) -> None:
    """The manifest lists each sidecar's file, SHA-256 and size inside the checksummed document."""
    store = CheckpointStore(tmp_path, job_id="books")
    commit(store, pending=10)
    document = read_document(manifest(store, 1))
    (entry,) = document["data"]["job_state"]["sidecars"].values()
    path = store.checkpoint_dir / entry["file"]
    assert entry["size"] == path.stat().st_size
    assert document["checksum"] == compute_checksum(document)
    assert document["status"] == "completed"


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_newest_checkpoint_is_corrupted_and_previous_loads(
    tmp_path: Path, compress: bool, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each kind of damage marks the newest checkpoint CORRUPTED with its reason; the previous one loads."""
    store = CheckpointStore(tmp_path, job_id="books", compress=compress)
    commit(store, completed=1)
    commit(store, completed=2)
    damage_fn, reason = DAMAGES[damage]
    damage_fn(store, 2)
    before = snapshot(store.checkpoint_dir)

    newest, previous = store.entries()
    assert newest.status is CheckpointStatus.CORRUPTED
    assert newest.checkpoint is None
    assert reason in (newest.reason or "")
    assert newest.reason
    assert previous.status is CheckpointStatus.COMPLETED

    with caplog.at_level(logging.WARNING, logger="scrapy_resilience.jobdir.store"):
        loaded = CheckpointStore(tmp_path, job_id="books").load_latest()
    assert loaded is not None
    assert loaded.checkpoint.sequence_number == 1
    assert loaded.checkpoint.metadata.completed_items == 1
    assert [entry.sequence for entry in loaded.skipped] == [2]
    assert newest.reason in caplog.text
    assert snapshot(store.checkpoint_dir) == before  # detecting and loading modify nothing


@pytest.mark.parametrize("damage", ["flipped byte", "altered sidecar"])
def test_damaged_files_survive_retention(tmp_path: Path, damage: str) -> None:
    """Retention never deletes a corrupted manifest nor the sidecars it names; new sequences skip past it."""
    store = CheckpointStore(tmp_path, job_id="books", retention=1)
    commit(store)
    commit(store)
    damaged_sidecar = sidecar_path(store, 2)
    DAMAGES[damage][0](store, 2)
    damaged = manifest(store, 2).read_bytes(), damaged_sidecar.read_bytes()
    store = CheckpointStore(tmp_path, job_id="books", retention=1)  # restarted: nothing hashed yet
    assert commit(store) == 3
    assert commit(store) == 4
    assert (manifest(store, 2).read_bytes(), damaged_sidecar.read_bytes()) == damaged
    assert [(entry.sequence, entry.status) for entry in store.entries()] == [
        (4, CheckpointStatus.COMPLETED),
        (2, CheckpointStatus.CORRUPTED),
    ]


def test_every_checkpoint_corrupted_loads_none(tmp_path: Path) -> None:
    """With no valid checkpoint left, load_latest returns None and every one is listed as CORRUPTED."""
    store = CheckpointStore(tmp_path, job_id="books")
    commit(store)
    commit(store)
    _empty(store, 1)
    _truncate(store, 2)
    assert store.load_latest() is None
    assert [entry.status for entry in store.verify()] == [CheckpointStatus.CORRUPTED] * 2


def test_copied_manifest_with_wrong_sequence_is_corrupted(tmp_path: Path) -> None:
    """A manifest whose sequence_number disagrees with its file name is not trusted."""
    store = CheckpointStore(tmp_path, job_id="books")
    commit(store)
    commit(store)
    manifest(store, 2).write_bytes(manifest(store, 1).read_bytes())
    newest = store.entries()[0]
    assert newest.status is CheckpointStatus.CORRUPTED
    assert "does not match the file name" in (newest.reason or "")


def test_sidecar_outside_the_directory_is_refused(tmp_path: Path) -> None:
    """A manifest cannot make the store read a file outside its checkpoint directory."""
    store = CheckpointStore(tmp_path, job_id="books")
    commit(store)
    path = manifest(store, 1)
    document = read_document(path)
    document["data"]["job_state"]["sidecars"]["pending"]["file"] = "../../etc/passwd"
    document["checksum"] = compute_checksum(document)
    write_document(path, document)
    (entry,) = store.entries()
    assert entry.status is CheckpointStatus.CORRUPTED
    assert "malformed" in (entry.reason or "")


def test_missing_directory_is_empty_and_not_created(tmp_path: Path) -> None:
    """Reading a job directory that does not exist finds nothing and creates nothing."""
    store = CheckpointStore(tmp_path / "nope", job_id="books")
    assert store.load_latest() is None
    assert store.entries() == []
    assert store.next_sequence == 1
    assert not (tmp_path / "nope").exists()


def test_sequence_numbers_continue_across_instances(tmp_path: Path) -> None:
    """A new store (a restarted crawl) continues the sequence, never reusing a corrupted checkpoint's number."""
    assert [commit(CheckpointStore(tmp_path, job_id="books")) for _ in range(3)] == [1, 2, 3]
    store = CheckpointStore(tmp_path, job_id="books")
    _empty(store, 3)
    assert store.next_sequence == 4
    assert commit(CheckpointStore(tmp_path, job_id="books")) == 4
    loaded = CheckpointStore(tmp_path, job_id="books").load_latest()
    assert loaded is not None
    assert loaded.checkpoint.sequence_number == 4


def test_retention_expires_oldest_and_collects_their_sidecars(tmp_path: Path, compress: bool) -> None:
    """Only the newest `retention` checkpoints remain, and only the sidecars they reference."""
    store = CheckpointStore(tmp_path, job_id="books", retention=3, compress=compress)
    for _ in range(6):
        commit(store)
    assert [entry.sequence for entry in store.entries()] == [6, 5, 4]
    referenced = {sidecar_path(store, sequence).name for sequence in (4, 5, 6)}
    sidecars = {path.name for path in store.checkpoint_dir.glob("sidecar-*")}
    assert sidecars == referenced


def test_shared_sidecar_kept_while_referenced(tmp_path: Path) -> None:
    """A sidecar reused by later checkpoints survives until no kept checkpoint references it."""
    store = CheckpointStore(tmp_path, job_id="books", retention=2)
    base = store.write_sidecar("base", lines(20))
    for _ in range(4):
        commit(store, shared={"base": base})
    assert (store.checkpoint_dir / base.file).exists()
    commit(store)
    assert (store.checkpoint_dir / base.file).exists()  # checkpoint 4 still lists it
    commit(store)
    assert not (store.checkpoint_dir / base.file).exists()
    loaded = store.load_latest()
    assert loaded is not None
    assert set(loaded.sidecars) == {"pending"}


def test_crash_leftovers_are_collected_on_next_commit(tmp_path: Path) -> None:
    """Temporary files and sidecars never committed (a crashed run's) go at the next commit; good files stay."""
    crashed = CheckpointStore(tmp_path, job_id="books")
    commit(crashed)
    orphan = crashed.write_sidecar("pending", lines(5))
    leftover = crashed.checkpoint_dir / f"{TMP_PREFIX}0123-checkpoint-000002.json"
    leftover.write_bytes(b'{"version": "1.0')
    kept = snapshot(crashed.checkpoint_dir)
    del kept[orphan.file], kept[leftover.name]

    restarted = CheckpointStore(tmp_path, job_id="books")
    assert commit(restarted) == 2
    after = snapshot(restarted.checkpoint_dir)
    assert not (restarted.checkpoint_dir / orphan.file).exists()
    assert not leftover.exists()
    assert {name: after[name] for name in kept} == kept


def test_sidecar_written_for_the_next_commit_is_not_collected(tmp_path: Path) -> None:
    """A sidecar written but not yet committed by this store survives another commit's garbage collection."""
    store = CheckpointStore(tmp_path, job_id="books", retention=1)
    commit(store)
    early = store.write_sidecar("pending", lines(5))
    store.commit(metadata=CheckpointMetadata(), data=CheckpointData(), sidecars={"pending": early})
    assert (store.checkpoint_dir / early.file).exists()


def test_failed_sidecar_stream_leaves_nothing_behind(tmp_path: Path) -> None:
    """A chunk iterator that raises leaves no partial file and no damage to earlier checkpoints."""
    store = CheckpointStore(tmp_path, job_id="books")
    commit(store)
    before = snapshot(store.checkpoint_dir)

    def broken() -> Iterator[bytes]:
        yield b"x" * 3_000_000
        raise RuntimeError("serialization failed")

    with pytest.raises(RuntimeError):
        store.write_sidecar("pending", broken())
    assert snapshot(store.checkpoint_dir) == before


def test_commit_refuses_a_damaged_sidecar(tmp_path: Path) -> None:
    """A checkpoint listing a missing or altered sidecar is refused instead of being born corrupted."""
    store = CheckpointStore(tmp_path, job_id="books")
    base = store.write_sidecar("base", lines(20))
    commit(store, shared={"base": base})
    flip_byte(store.checkpoint_dir / base.file, 5)
    store = CheckpointStore(tmp_path, job_id="books")  # restarted: nothing hashed yet
    with pytest.raises(CheckpointCorruptedError, match="was altered"):
        commit(store, shared={"base": base})
    (store.checkpoint_dir / base.file).unlink()
    with pytest.raises(CheckpointCorruptedError, match="is missing"):
        commit(store, shared={"base": base})
    assert [entry.sequence for entry in store.entries()] == [1]


def test_invalid_sidecar_name_is_refused(tmp_path: Path) -> None:
    """Sidecar names are plain words: no path separators, no dots."""
    store = CheckpointStore(tmp_path, job_id="books")
    with pytest.raises(ValueError, match="sidecar name"):
        store.write_sidecar("../escape", [b""])


def test_compression_may_change_between_runs(tmp_path: Path) -> None:
    """A job written with gzip resumes without it and the other way round."""
    commit(CheckpointStore(tmp_path, job_id="books", compress=True))
    commit(CheckpointStore(tmp_path, job_id="books", compress=False))
    store = CheckpointStore(tmp_path, job_id="books", compress=True)
    assert [entry.status for entry in store.entries()] == [CheckpointStatus.COMPLETED] * 2
    names = sorted(path.name for path in store.checkpoint_dir.glob("checkpoint-*"))
    assert names == ["checkpoint-000001.json.gz", "checkpoint-000002.json"]


def test_files_and_folders_are_owner_only(tmp_path: Path, compress: bool) -> None:
    """Directories the store creates are 0o700 and every file 0o600, whatever the umask."""
    old_umask = os.umask(0)
    try:
        store = CheckpointStore(tmp_path / "crawls" / "books-1", job_id="books", compress=compress)
        commit(store)
    finally:
        os.umask(old_umask)
    for directory in (tmp_path / "crawls", store.directory, store.checkpoint_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(store.checkpoint_dir.iterdir())
    assert len(files) == 2
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}


def test_manifest_stays_under_one_megabyte(tmp_path: Path) -> None:
    """However big the sidecars and however many, the manifest stays under 1 MB."""
    store = CheckpointStore(tmp_path, job_id="books")
    fingerprints = (b"%040x\n" % index for index in range(300_000))
    sidecars = {"fingerprints": store.write_sidecar("fingerprints", fingerprints)}
    for index in range(40):
        sidecars[f"delta-{index:08d}"] = store.write_sidecar(f"delta-{index:08d}", lines(1000, index * 1000))
    store.commit(metadata=CheckpointMetadata(), data=CheckpointData(), sidecars=sidecars)
    total = sum(ref.size for ref in sidecars.values())
    assert total > 12 * MAX_MANIFEST_BYTES
    assert manifest(store, 1).stat().st_size < MAX_MANIFEST_BYTES
    loaded = store.load_latest()
    assert loaded is not None
    assert loaded.sidecars == sidecars
