"""Entities <-> JSON (cattrs reads, attrs writes), checksums, schema versions.

JSON form of the entities: enums are their lowercase string values
(``"completed"``), datetimes are ISO 8601 in UTC with a ``Z`` (microseconds
only when non-zero: ``"2025-01-27T15:30:00.123456Z"``), tuples are lists,
``None`` is ``null``. Structuring is strict (no ``"3"`` for 3, no 1.5 for an
int) and every failure is a ``ValueError`` listing each problem with its path
(``... @ $.metadata.total_items``).

A checkpoint file is the document of ``checkpoint_to_document``; its checksum
is the SHA-256 of ``canonical_bytes`` (docs/reference/checkpoint-format.md defines that form for other
tools). Schema versions are ``major.minor.patch``:

- the same major loads whatever its minor or patch. A document of a *newer*
  minor may hold fields this version does not know: they are covered by the
  checksum, then dropped from the loaded Checkpoint with a warning naming each
  one (an unknown field in a document of our own or an older minor is an
  error, since no such writer exists);
- a newer major is refused with ``SchemaVersionError``;
- an older major is first verified with *its* checksum rules, then migrated
  one major at a time through ``MIGRATIONS``, then re-sealed as the current
  version.

Schema 0.9.0 (the pre-release, the only older major) differs from 1.0.0 in
that it wrote ``created_at`` instead of ``timestamp``, ``seq`` instead of
``sequence_number``, the status in upper case (``"COMPLETED"``), no
``metadata.browser_sessions``, and its checksum was the SHA-256 of
``json.dumps(document without "checksum", sort_keys=True)`` with Python's
default separators and ASCII escaping.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, mapping_structure_factory
from cattrs.enums import enum_structure_factory
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.json import make_converter

from scrapy_resilience.exceptions import CheckpointCorruptedError, SchemaVersionError
from scrapy_resilience.model import entities as models
from scrapy_resilience.model.entities import Checkpoint, FailureEvent
from scrapy_resilience.model.validators import SEMVER, InvalidField

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = models.CHECKPOINT_SCHEMA_VERSION
_CURRENT = tuple(int(part) for part in SCHEMA_VERSION.split("."))
# The order of the keys in a document, as the data model lists them (the
# checksum ignores order; people reading a file do not).
DOCUMENT_KEYS = ("version", "id", "job_id", "timestamp", "sequence_number", "status", "metadata", "data", "checksum")

_converter = make_converter()

# Strings from a file must not be "repaired": a datetime without a zone is
# refused, any offset is accepted and converted to UTC.
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)")


def _format_datetime(value: datetime) -> str:
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def _parse_datetime(value: Any, _: type) -> datetime:
    match = _ISO.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected an ISO 8601 timestamp with a zone such as 2025-01-27T15:30:00Z, got {value!r}")
    base, fraction, zone = match.groups()
    text = f"{base}.{(fraction or '0').ljust(6, '0')}{'+00:00' if zone == 'Z' else zone}"
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def _strict(kind: type, *accepted: type) -> Callable[[Any, type], Any]:
    """A structure hook that accepts only JSON values of ``accepted`` types (never bool for numbers)."""
    accepted = accepted or (kind,)

    def structure_value(value: Any, _: type) -> Any:
        if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
            raise TypeError(f"expected {kind.__name__}, got {value!r}")
        return kind(value)

    return structure_value


def _only(json_type: type, factory: Callable[[Any, Any], Callable[[Any, Any], Any]]) -> Callable[[Any], Any]:
    """A hook factory that refuses values other than ``json_type``, then runs cattrs' own hook.

    cattrs alone would read a string as a tuple of its characters and anything
    without the keys as an entity made of defaults.
    """

    def make_hook(type_: Any) -> Callable[[Any, Any], Any]:
        hook = factory(type_, _converter)

        def structure_checked(value: Any, target: Any) -> Any:
            if not isinstance(value, json_type):
                raise TypeError(f"expected a JSON {'object' if json_type is dict else 'array'}, got {value!r:.60}")
            return hook(value, target)

        return structure_checked

    return make_hook


def _generic_of(origin: type) -> Callable[[Any], bool]:
    return lambda type_: getattr(type_, "__origin__", None) is origin


_converter.register_structure_hook_factory(attrs.has, _only(dict, make_dict_structure_fn))
# Any and enums as cattrs would read them, but claimed ahead of its own
# predicates, the first of which asks whether the type is a Mapping (see
# ``unstructure``): 420 long-lived objects fewer.
_converter.register_structure_hook_factory(lambda type_: type_ is Any, lambda _: lambda value, _: value)
_converter.register_structure_hook_factory(lambda type_: isinstance(type_, enum.EnumMeta), enum_structure_factory)
_converter.register_structure_hook_factory(_generic_of(dict), _only(dict, mapping_structure_factory))
_converter.register_structure_hook_factory(_generic_of(tuple), _only(list, homogenous_tuple_structure_factory))
_converter.register_structure_hook(datetime, _parse_datetime)
_converter.register_structure_hook(int, _strict(int))
_converter.register_structure_hook(float, _strict(float, int, float))
_converter.register_structure_hook(str, _strict(str))
_converter.register_structure_hook(bool, _strict(bool))


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return "required field missing"
    return str(error) or cattrs.v.format_exception(error, None)


def _messages(exc: BaseException, path: str) -> list[str]:
    """Like ``cattrs.transform_error``, and the path of our validators' errors ends at their field.

    (The validators run in ``__init__``, so cattrs attributes their errors to the
    class, not the field; ``InvalidField`` names the field.)
    """
    if isinstance(exc, InvalidField):
        return [f"{exc} @ {path}.{exc.field}"]
    if not isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        return [f"{_describe(exc)} @ {path}"]
    with_notes: list[tuple[Exception, Any]]
    with_notes, without = exc.group_exceptions()
    messages = []
    for sub, note in with_notes:
        step = f".{note.name}" if isinstance(note, cattrs.AttributeValidationNote) else f"[{note.index!r}]"
        messages += _messages(sub, path + step)
    for sub in without:
        messages += _messages(sub, path)
    return messages


def _json_value(_instance: Any, _field: Any, value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return _format_datetime(value)
    return value


def unstructure(obj: Any) -> Any:
    """The JSON-ready form (dicts, lists, strings, numbers, bools, None) of an entity.

    attrs' own ``asdict``, not the converter: to pick a hook for each type it
    meets, cattrs asks first "is it a Mapping?", an ``issubclass`` that walks
    the hundred-odd classes under ``collections.abc.Mapping`` and leaves an
    entry in each one's cache. Writing a checkpoint left 2,900 such objects,
    alive as long as the process, and every full pass of the garbage
    collector walks them: about 0.4 % of a CPU-bound crawl (see the
    checkpoints page, "Measured").
    """
    return attrs.asdict(obj, value_serializer=_json_value)


def structure(data: Any, cls: type[T]) -> T:
    """Build a ``cls`` from its JSON form; ``ValueError`` lists every problem with its path."""
    try:
        return _converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"invalid {cls.__name__}: " + "; ".join(_messages(exc, "$"))) from None


def canonical_bytes(doc: dict[str, Any]) -> bytes:
    """The canonical form of a document: the bytes its checksum is computed over.

    The document without its top-level ``"checksum"`` key, as JSON in UTF-8, keys
    sorted at every level, no whitespace, non-ASCII characters unescaped, NaN and
    infinities refused (``ValueError``).
    """
    content = {key: value for key, value in doc.items() if key != "checksum"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def compute_checksum(doc: dict[str, Any]) -> str:
    """Lowercase hex SHA-256 of ``canonical_bytes(doc)``."""
    return hashlib.sha256(canonical_bytes(doc)).hexdigest()


def _checksum_v0(doc: dict[str, Any]) -> str:
    content = {key: value for key, value in doc.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _migrate_0_to_1(doc: dict[str, Any]) -> dict[str, Any]:
    migrated = {key: value for key, value in doc.items() if key not in ("created_at", "seq")}
    migrated["timestamp"] = doc["created_at"]
    migrated["sequence_number"] = doc["seq"]
    migrated["status"] = doc["status"].lower()
    migrated["metadata"] = {"browser_sessions": [], **doc["metadata"]}
    migrated["version"] = "1.0.0"
    return migrated


# How each major version computes its checksum, and how a document of major N
# becomes one of major N + 1. A new major adds one entry to each.
CHECKSUM_RULES: dict[int, Callable[[dict[str, Any]], str]] = {0: _checksum_v0, 1: compute_checksum}
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _migrate_0_to_1}


def checkpoint_to_document(cp: Checkpoint) -> dict[str, Any]:
    """The checkpoint file's JSON document (the data model's "Checkpoint File Format")."""
    if _version(cp.version)[0] != _CURRENT[0]:
        raise SchemaVersionError(
            f"cannot write a checkpoint of schema version {cp.version}; this writes {SCHEMA_VERSION}"
        )
    data = unstructure(cp)
    return {key: data[key] for key in DOCUMENT_KEYS}


def seal(checkpoint: Checkpoint) -> Checkpoint:
    """The same checkpoint with its checksum set to that of its document."""
    return attrs.evolve(checkpoint, checksum=compute_checksum(checkpoint_to_document(checkpoint)))


def checkpoint_from_document(doc: Any) -> Checkpoint:
    """Verify, migrate if needed, and load a checkpoint document (parsed JSON).

    Raises ``SchemaVersionError`` for a major version this package cannot read
    and ``CheckpointCorruptedError`` (with the reason) for everything else wrong:
    no valid version, checksum mismatch, a field missing or invalid.
    """
    if not isinstance(doc, dict):
        raise CheckpointCorruptedError(f"a checkpoint document is a JSON object, got {type(doc).__name__}")
    version = doc.get("version")
    if not isinstance(version, str) or not SEMVER.fullmatch(version):
        raise CheckpointCorruptedError(f"no valid schema version: {version!r}")
    major, minor, _ = _version(version)
    if major not in CHECKSUM_RULES:
        newer = "newer" if major > _CURRENT[0] else "older"
        raise SchemaVersionError(
            f"checkpoint schema version {version} is {newer} than this scrapy-resilience can read "
            f"(it reads {min(CHECKSUM_RULES)}.x to {SCHEMA_VERSION}): "
            + ("upgrade scrapy-resilience to read it" if newer == "newer" else "no migration exists")
        )
    try:
        actual = CHECKSUM_RULES[major](doc)
    except (TypeError, ValueError) as exc:
        raise CheckpointCorruptedError(f"content cannot be hashed: {exc}") from None
    if doc.get("checksum") != actual:
        raise CheckpointCorruptedError(
            f"checksum mismatch: the document records {doc.get('checksum')!r}, its content hashes to {actual}"
        )
    migrated = major < _CURRENT[0]
    try:
        while major < _CURRENT[0]:
            doc = MIGRATIONS[major](doc)
            major += 1
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointCorruptedError(f"cannot migrate schema version {version}: {exc!r}") from None
    unknown = unknown_fields(doc, Checkpoint)
    if unknown and (migrated or minor <= _CURRENT[1]):
        raise CheckpointCorruptedError(f"unknown fields in a version {version} document: {', '.join(unknown)}")
    if unknown:
        logger.warning(
            "Checkpoint %s has schema version %s, newer than %s: ignoring the fields %s",
            doc.get("id"),
            version,
            SCHEMA_VERSION,
            ", ".join(unknown),
        )
    try:
        checkpoint = structure(doc, Checkpoint)
    except ValueError as exc:
        raise CheckpointCorruptedError(str(exc)) from None
    return seal(attrs.evolve(checkpoint, version=SCHEMA_VERSION)) if migrated else checkpoint


def unknown_fields(data: Any, cls: type, path: str = "$") -> list[str]:
    """Paths of the keys in ``data`` that no field of attrs class ``cls`` (or its nested entities) declares."""
    if not isinstance(data, dict):
        return []
    types = {field.name: field.type for field in attrs.fields(cls)}
    found = []
    for key, value in data.items():
        if key not in types:
            found.append(f"{path}.{key}")
            continue
        field_type: Any = types[key]
        if attrs.has(field_type):
            found.extend(unknown_fields(value, field_type, f"{path}.{key}"))
        elif getattr(field_type, "__origin__", None) is tuple and attrs.has(field_type.__args__[0]):
            for index, item in enumerate(value if isinstance(value, list) else []):
                found.extend(unknown_fields(item, field_type.__args__[0], f"{path}.{key}[{index}]"))
    return found


def event_to_line(ev: FailureEvent) -> str:
    """One FailureEvent as one line of JSON, without the newline (and with no newline inside)."""
    # ASCII escapes keep the line one line for every reader: a raw U+2028 in a
    # message would split it for str.splitlines().
    return json.dumps(unstructure(ev), separators=(",", ":"), allow_nan=False)


def event_from_line(line: str) -> FailureEvent:
    """The FailureEvent of one JSON line; ``ValueError`` for anything else."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"a failure event is a JSON object, got {type(data).__name__}")
    return structure(data, FailureEvent)


def _version(version: str) -> tuple[int, int, int]:
    major, minor, patch = SEMVER.fullmatch(version).groups()[:3]  # type: ignore[union-attr]
    return int(major), int(minor), int(patch)


for _entity in models.ENTITIES:
    attrs.resolve_types(_entity)  # field.type as classes (the model uses string annotations), for unknown_fields
