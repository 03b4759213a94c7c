"""Checkpoint files of one job: atomic manifests, immutable sidecars, retention, newest-valid load.

``DIR/checkpoints/`` holds, for each checkpoint, a manifest
``checkpoint-000042.json`` (``.json.gz`` when compressed): the data model's
checkpoint document, sealed with its SHA-256 checksum. Bulk state (pending
requests, seen fingerprints) goes in sidecar files
``sidecar-<uuid>-<name>.jsonl[.gz]``, which the manifest records under
``data.job_state["sidecars"]`` with their size and SHA-256, so the one manifest
checksum covers the whole checkpoint and the manifest stays small. Sidecars
are immutable and may be shared by several checkpoints.

Every file is written atomically (temporary file in the same directory, fsync,
rename, fsync of the directory): a crash at any instant leaves every earlier
checkpoint intact. Damaged files are reported and skipped, never modified or
deleted. All of it is blocking I/O that Scrapy components call off the reactor
thread; one process writes a job directory at a time.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, cast

import attrs

from scrapy_resilience.exceptions import CheckpointCorruptedError
from scrapy_resilience.jobdir import manifest
from scrapy_resilience.jobdir.fileio import (
    FILE_MODE as FILE_MODE,  # re-exported: the journal imports it from here
)
from scrapy_resilience.jobdir.fileio import (
    TMP_PREFIX,
    atomic_write,
    ensure_private_dir,
    fsync_dir,
    inflight_temporaries,
    read_lines,
    sha256_of_file,
)
from scrapy_resilience.jobdir.manifest import ManifestError, SidecarRef
from scrapy_resilience.model.entities import Checkpoint, CheckpointData, CheckpointMetadata, CheckpointStatus
from scrapy_resilience.model.lifecycle import CheckpointLifecycle, CheckpointPhase
from scrapy_resilience.model.serialization import seal

__all__ = ["MAX_MANIFEST_BYTES", "CheckpointEntry", "CheckpointStore", "LoadedCheckpoint", "SidecarRef"]

logger = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 1 << 20  # the contract: a manifest stays under 1 MB


@attrs.frozen(kw_only=True)
class CheckpointEntry:
    """One manifest found in the directory: COMPLETED (valid) or CORRUPTED, with the reason."""

    sequence: int
    file: str
    status: CheckpointStatus
    size: int
    reason: str | None = None
    checkpoint: Checkpoint | None = None
    sidecars: Mapping[str, SidecarRef] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class LoadedCheckpoint:
    """The checkpoint a job resumes from, its sidecars, and the corrupted ones passed over."""

    checkpoint: Checkpoint
    sidecars: dict[str, SidecarRef]
    skipped: list[CheckpointEntry]
    lifecycle: CheckpointLifecycle


class CheckpointStore:
    """The checkpoints of one job directory. Blocking; thread-safe; one writing process per directory."""

    def __init__(
        self, directory: str | os.PathLike[str], *, job_id: str, retention: int = 10, compress: bool = False
    ) -> None:
        if retention < 1:
            raise ValueError(f"retention must be at least 1, got {retention}")
        self.directory = Path(directory)
        self.checkpoint_dir = self.directory / "checkpoints"
        self.job_id = job_id
        self.retention = retention
        self.compress = compress
        self._lock = threading.Lock()
        self._last_sequence = 0
        # Sidecars written for a checkpoint not committed yet: not garbage.
        self._uncommitted: set[str] = set()
        # Sidecar file -> (inode, size, mtime_ns, SHA-256) once hashed by this
        # store: sidecars are immutable, so retention, which must not delete a
        # damaged file, re-hashes only what changed since, not gigabytes per commit.
        self._hashed: dict[str, tuple[int, int, int, str]] = {}

    # -- writing ---------------------------------------------------------

    def write_sidecar(self, name: str, chunks: Iterable[bytes]) -> SidecarRef:
        """Stream ``chunks`` into a new immutable sidecar file and return its reference."""
        file = manifest.new_sidecar_name(name, compress=self.compress)
        ensure_private_dir(self.checkpoint_dir)
        with self._lock:
            self._uncommitted.add(file)
        sha256, size = atomic_write(self.checkpoint_dir / file, chunks, compress=self.compress)
        self._remember_hash(file, sha256)
        return SidecarRef(file, sha256, size)

    def open_sidecar(self, ref: SidecarRef) -> BinaryIO:
        """Open a sidecar for reading its decompressed bytes (the caller closes it)."""
        path = self.checkpoint_dir / ref.file
        if ref.file.endswith(".gz"):
            return cast(BinaryIO, gzip.open(path, "rb"))  # a GzipFile reads like any binary file
        return open(path, "rb")

    def sidecar_lines(self, ref: SidecarRef) -> Iterator[bytes]:
        """A sidecar's decompressed lines, read a block at a time (``fileio.read_lines``); blocking."""
        with self.open_sidecar(ref) as handle:
            yield from read_lines(handle)

    def commit(
        self,
        *,
        metadata: CheckpointMetadata,
        data: CheckpointData,
        sidecars: Mapping[str, SidecarRef],
        status: CheckpointStatus = CheckpointStatus.COMPLETED,
    ) -> Checkpoint:
        """Seal and write the next checkpoint atomically, then apply retention; return it."""
        with self._lock:
            # A sidecar written before this commit and not referenced by it is garbage.
            self._uncommitted.clear()
            lifecycle = CheckpointLifecycle()
            sequence = self._next_sequence()
            name = manifest.manifest_name(sequence, compress=self.compress)
            job_state = manifest.with_sidecars(data.job_state, dict(sidecars))
            checkpoint = seal(
                Checkpoint(
                    job_id=self.job_id,
                    sequence_number=sequence,
                    status=status,
                    metadata=metadata,
                    data=attrs.evolve(data, job_state=job_state),
                )
            )
            encoded = manifest.encode(checkpoint)
            lifecycle.to(CheckpointPhase.VALIDATING)
            # What is written must read back as the same checkpoint, with intact
            # sidecars (cheap: their hashes are cached); else the damage would
            # only show at resume, and a corrupted-at-birth checkpoint would
            # stay forever, since retention never deletes damaged files.
            try:
                for ref in sidecars.values():
                    self._check_sidecar(ref, trust_cache=True)
                if manifest.parse(encoded, name.removesuffix(".gz"))[0] != checkpoint:
                    raise ManifestError("it does not survive its own serialization")
            except ManifestError as exc:
                lifecycle.to(CheckpointPhase.CORRUPTED)
                raise CheckpointCorruptedError(f"checkpoint {sequence} not written: {exc}") from None
            if len(encoded) >= MAX_MANIFEST_BYTES:
                logger.warning(
                    "Checkpoint manifest %d is %d bytes (limit %d): bulk state belongs in sidecars",
                    sequence,
                    len(encoded),
                    MAX_MANIFEST_BYTES,
                )
            ensure_private_dir(self.checkpoint_dir)
            atomic_write(self.checkpoint_dir / name, [encoded], compress=self.compress)
            lifecycle.to(CheckpointPhase.COMPLETED)
            self._last_sequence = sequence
            self._apply_retention()
            return checkpoint

    def _apply_retention(self) -> None:
        """Expire valid checkpoints beyond the newest ``retention``; remove files nothing kept references."""
        entries = [self._inspect(name, trust_cache=True) for name in self._manifest_names()]
        valid = [entry for entry in entries if entry.status is CheckpointStatus.COMPLETED]
        referenced: set[str] = set()
        for entry in valid[: self.retention]:
            referenced.update(ref.file for ref in entry.sidecars.values())
        for entry in entries:
            if entry.status is CheckpointStatus.CORRUPTED:
                # Kept as evidence, and so is everything it names.
                referenced.update(self._mentioned_sidecars(entry.file))
        removed = False
        for entry in valid[self.retention :]:
            CheckpointLifecycle(CheckpointPhase.COMPLETED).to(CheckpointPhase.EXPIRED)
            (self.checkpoint_dir / entry.file).unlink(missing_ok=True)
            logger.debug("Checkpoint %s expired and removed", entry.file)
            removed = True
        busy = self._uncommitted | inflight_temporaries()
        for file in os.listdir(self.checkpoint_dir):
            garbage = file.startswith(TMP_PREFIX) or (manifest.is_sidecar(file) and file not in referenced)
            if garbage and file not in busy:
                (self.checkpoint_dir / file).unlink(missing_ok=True)
                self._hashed.pop(file, None)
                removed = True
        if removed:
            fsync_dir(self.checkpoint_dir)

    # -- reading ---------------------------------------------------------

    @property
    def next_sequence(self) -> int:
        """The sequence number the next commit gets: after every manifest ever seen, corrupted ones included."""
        with self._lock:
            return self._next_sequence()

    def _next_sequence(self) -> int:
        numbers = [self._sequence(name) for name in self._manifest_names()]
        return max([self._last_sequence, *numbers]) + 1

    def entries(self) -> list[CheckpointEntry]:
        """Every manifest, newest first, fully validated (sidecar hashes included); modifies nothing."""
        return [self._inspect(name) for name in self._manifest_names()]

    verify = entries

    def load_latest(self) -> LoadedCheckpoint | None:
        """The newest valid checkpoint, passing over (and logging) corrupted ones; None when there is none."""
        skipped: list[CheckpointEntry] = []
        for name in self._manifest_names():
            lifecycle = CheckpointLifecycle()
            lifecycle.to(CheckpointPhase.VALIDATING)
            entry = self._inspect(name)
            if entry.checkpoint is None:
                lifecycle.to(CheckpointPhase.CORRUPTED)
                logger.warning("Checkpoint %s is corrupted, falling back to an older one: %s", name, entry.reason)
                skipped.append(entry)
                continue
            lifecycle.to(CheckpointPhase.COMPLETED)
            lifecycle.to(CheckpointPhase.ACTIVE)
            return LoadedCheckpoint(
                checkpoint=entry.checkpoint, sidecars=dict(entry.sidecars), skipped=skipped, lifecycle=lifecycle
            )
        return None

    @staticmethod
    def _sequence(name: str) -> int:
        return manifest.sequence_of(name) or 0

    def _manifest_names(self) -> list[str]:
        """Manifest file names, newest (highest sequence) first."""
        try:
            names = [name for name in os.listdir(self.checkpoint_dir) if manifest.sequence_of(name) is not None]
        except FileNotFoundError:
            return []
        return sorted(names, key=self._sequence, reverse=True)

    def _inspect(self, name: str, *, trust_cache: bool = False) -> CheckpointEntry:
        """Validate one manifest and every sidecar it references (see ``_check_sidecar`` for ``trust_cache``)."""
        path = self.checkpoint_dir / name
        size = 0
        try:
            raw = path.read_bytes()
            size = len(raw)
            checkpoint, sidecars = manifest.parse(raw, name)
            for ref in sidecars.values():
                self._check_sidecar(ref, trust_cache=trust_cache)
        except (ManifestError, OSError) as exc:
            reason = str(exc) if isinstance(exc, ManifestError) else f"unreadable: {exc}"
            return CheckpointEntry(
                sequence=self._sequence(name), file=name, status=CheckpointStatus.CORRUPTED, size=size, reason=reason
            )
        return CheckpointEntry(
            sequence=self._sequence(name),
            file=name,
            status=CheckpointStatus.COMPLETED,
            size=size,
            checkpoint=checkpoint,
            sidecars=sidecars,
        )

    def _check_sidecar(self, ref: SidecarRef, *, trust_cache: bool) -> None:
        """Existence, size and SHA-256 of a sidecar.

        ``trust_cache`` skips hashing a file this store hashed before when its
        inode, size and mtime are unchanged: right for retention and commit,
        which run every few seconds, but not for ``entries`` and
        ``load_latest``, since bit rot changes no mtime.
        """
        path = self.checkpoint_dir / ref.file
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ManifestError(f"sidecar {ref.file} is missing") from None
        if st.st_size != ref.size:
            raise ManifestError(f"sidecar {ref.file} has {st.st_size} bytes, the manifest says {ref.size}")
        if trust_cache and self._hashed.get(ref.file) == (st.st_ino, st.st_size, st.st_mtime_ns, ref.sha256):
            return
        if sha256_of_file(path) != ref.sha256:
            raise ManifestError(f"sidecar {ref.file} was altered: its SHA-256 does not match the manifest")
        self._remember_hash(ref.file, ref.sha256)

    def _remember_hash(self, file: str, sha256: str) -> None:
        st = (self.checkpoint_dir / file).stat()
        self._hashed[file] = (st.st_ino, st.st_size, st.st_mtime_ns, sha256)

    def _mentioned_sidecars(self, name: str) -> set[str]:
        try:
            return manifest.mentioned_sidecars((self.checkpoint_dir / name).read_bytes(), name)
        except OSError:
            return set()
