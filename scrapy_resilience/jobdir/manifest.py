"""The checkpoint manifest as a file: names, encoding, parsing, and its table of sidecars.

A manifest ``checkpoint-000042.json`` (``.json.gz`` when compressed) holds the
checkpoint document of ``serialization``; it lists its sidecar files
(``sidecar-<uuid>-<name>.jsonl[.gz]``) under ``data.job_state["sidecars"]`` as
``{name: {"file", "sha256", "size"}}``, inside the checksummed document.
Parsing turns every kind of damage into ``ManifestError`` with a reason that a
person can act on.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
import zlib
from typing import Any

import attrs

from scrapy_resilience.exceptions import CheckpointCorruptedError, SchemaVersionError
from scrapy_resilience.model.entities import Checkpoint
from scrapy_resilience.model.serialization import checkpoint_from_document, checkpoint_to_document

SIDECARS_KEY = "sidecars"  # where in data.job_state a manifest lists its sidecars

_MANIFEST_RE = re.compile(r"checkpoint-(\d+)\.json(?:\.gz)?")
_SIDECAR_RE = re.compile(rb"sidecar-[0-9a-f]{32}-[A-Za-z0-9_-]{1,64}\.jsonl(?:\.gz)?")
_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ManifestError(Exception):
    """Why a manifest is not a valid checkpoint (the message is the reason shown to people)."""


@attrs.frozen
class SidecarRef:
    """A sidecar file of ``DIR/checkpoints``: its name there, and the SHA-256 and size of its stored bytes."""

    file: str
    sha256: str
    size: int


def manifest_name(sequence: int, *, compress: bool) -> str:
    return f"checkpoint-{sequence:06d}.json" + (".gz" if compress else "")


def sequence_of(name: str) -> int | None:
    """The sequence number in a manifest's file name; None for any other file."""
    match = _MANIFEST_RE.fullmatch(name)
    return int(match.group(1)) if match else None


def new_sidecar_name(name: str, *, compress: bool) -> str:
    """A unique file name for a new sidecar: unique, because sidecars are immutable and shared."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"sidecar name must match {_NAME_RE.pattern}, got {name!r}")
    return f"sidecar-{uuid.uuid4().hex}-{name}.jsonl" + (".gz" if compress else "")


def is_sidecar(file: str) -> bool:
    return _SIDECAR_RE.fullmatch(file.encode()) is not None


def with_sidecars(job_state: dict[str, Any], sidecars: dict[str, SidecarRef]) -> dict[str, Any]:
    """``job_state`` plus the table of ``sidecars``."""
    return {**job_state, SIDECARS_KEY: {name: attrs.asdict(ref) for name, ref in sidecars.items()}}


def encode(checkpoint: Checkpoint) -> bytes:
    """The manifest's bytes before compression (indented: people read these files)."""
    return json.dumps(checkpoint_to_document(checkpoint), indent=1, sort_keys=True).encode()


def parse(raw: bytes, name: str) -> tuple[Checkpoint, dict[str, SidecarRef]]:
    """The checkpoint of manifest file ``name`` and its sidecar table; ``ManifestError`` for any damage."""
    if not raw:
        raise ManifestError("empty file")
    if name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ManifestError(f"not a valid gzip file (truncated?): {exc}") from None
    try:
        document = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ManifestError(f"invalid JSON (truncated?): {exc}") from None
    try:
        checkpoint = checkpoint_from_document(document)
    except SchemaVersionError as exc:
        raise ManifestError(f"unsupported schema version: {exc}") from None
    except (CheckpointCorruptedError, ValueError) as exc:  # checksum, structure, field values
        raise ManifestError(str(exc)) from None
    if checkpoint.sequence_number != sequence_of(name):
        raise ManifestError(f"sequence_number {checkpoint.sequence_number} does not match the file name")
    return checkpoint, _sidecar_refs(checkpoint.data.job_state.get(SIDECARS_KEY, {}))


def _sidecar_refs(listed: Any) -> dict[str, SidecarRef]:
    """The manifest's sidecar table, checked: names stay inside the checkpoint directory."""
    if not isinstance(listed, dict):
        raise ManifestError(f"job_state[{SIDECARS_KEY!r}] is not an object")
    refs = {}
    for name, fields in listed.items():
        try:
            ref = SidecarRef(fields["file"], fields["sha256"], fields["size"])
        except (TypeError, KeyError):
            raise ManifestError(f"sidecar entry {name!r} is malformed") from None
        if not (isinstance(ref.file, str) and is_sidecar(ref.file) and isinstance(ref.sha256, str)):
            raise ManifestError(f"sidecar entry {name!r} is malformed")
        if not isinstance(ref.size, int) or isinstance(ref.size, bool):
            raise ManifestError(f"sidecar entry {name!r} is malformed")
        refs[name] = ref
    return refs


def mentioned_sidecars(raw: bytes, name: str) -> set[str]:
    """Best effort: the sidecar names appearing in a damaged manifest, even a truncated one."""
    if name.endswith(".gz"):
        try:
            raw = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(raw)
        except zlib.error:
            return set()
    return {match.decode() for match in _SIDECAR_RE.findall(raw)}
