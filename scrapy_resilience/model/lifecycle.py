"""The two lifecycles of the data model as explicit state machines.

A Checkpoint goes ``CREATED -> VALIDATING -> COMPLETED | CORRUPTED``; a
completed one becomes ``ACTIVE`` when a resume uses it and ``EXPIRED`` when
retention removes it; a corrupted one can still be made ``ACTIVE`` as a
fallback (its readable parts used after a repair) and then ``COMPLETED``.
A FailureEvent goes ``DETECTED -> ANALYZING -> RECOVERING | ABORTED``, and a
recovery ends ``RESOLVED`` or ``FAILED -> MANUAL_INTERVENTION``.

Only the transitions listed here are legal; ``to`` raises ``IllegalTransition``
for any other, staying where it was. Staying in the same phase is not a
transition and is illegal too, so a duplicated step is caught as a bug.

The phases are runtime states; a checkpoint *file* records one of the four
``CheckpointStatus`` values, and ``status_of`` maps the phases that have one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from scrapy_resilience.exceptions import IllegalTransition
from scrapy_resilience.model.entities import CheckpointStatus


class CheckpointPhase(enum.Enum):
    CREATED = "created"
    VALIDATING = "validating"
    COMPLETED = "completed"
    CORRUPTED = "corrupted"
    ACTIVE = "active"
    EXPIRED = "expired"


class FailureEventPhase(enum.Enum):
    DETECTED = "detected"
    ANALYZING = "analyzing"
    RECOVERING = "recovering"
    ABORTED = "aborted"
    RESOLVED = "resolved"
    FAILED = "failed"
    MANUAL_INTERVENTION = "manual_intervention"


_C = CheckpointPhase
CHECKPOINT_TRANSITIONS: Mapping[CheckpointPhase, frozenset[CheckpointPhase]] = {
    _C.CREATED: frozenset({_C.VALIDATING}),
    _C.VALIDATING: frozenset({_C.COMPLETED, _C.CORRUPTED}),
    # COMPLETED -> EXPIRED is not in the data model's diagram, which shows only
    # the path through ACTIVE. But retention removes old checkpoints whether or
    # not a resume ever used them, and most checkpoints are never used: without
    # this edge, expiring them would need a fake activation first.
    _C.COMPLETED: frozenset({_C.ACTIVE, _C.EXPIRED}),
    _C.CORRUPTED: frozenset({_C.ACTIVE}),
    _C.ACTIVE: frozenset({_C.EXPIRED, _C.COMPLETED}),
    _C.EXPIRED: frozenset(),
}

_F = FailureEventPhase
FAILURE_EVENT_TRANSITIONS: Mapping[FailureEventPhase, frozenset[FailureEventPhase]] = {
    _F.DETECTED: frozenset({_F.ANALYZING}),
    _F.ANALYZING: frozenset({_F.RECOVERING, _F.ABORTED}),
    _F.RECOVERING: frozenset({_F.RESOLVED, _F.FAILED}),
    _F.ABORTED: frozenset(),
    _F.RESOLVED: frozenset(),
    _F.FAILED: frozenset({_F.MANUAL_INTERVENTION}),
    _F.MANUAL_INTERVENTION: frozenset(),
}

_STATUS_OF_PHASE: Mapping[CheckpointPhase, CheckpointStatus] = {
    _C.COMPLETED: CheckpointStatus.COMPLETED,
    _C.CORRUPTED: CheckpointStatus.CORRUPTED,
    _C.ACTIVE: CheckpointStatus.ACTIVE,
    _C.EXPIRED: CheckpointStatus.EXPIRED,
}


def status_of(phase: CheckpointPhase) -> CheckpointStatus | None:
    """The file status of a checkpoint in ``phase``; None while it is created or validated."""
    return _STATUS_OF_PHASE.get(phase)


P = TypeVar("P", CheckpointPhase, FailureEventPhase)


class _Lifecycle(Generic[P]):
    """A phase and the transitions allowed out of each phase."""

    transitions: ClassVar[Mapping[Any, frozenset[Any]]]
    subject: ClassVar[str]

    def __init__(self, phase: P) -> None:
        self.phase: P = phase

    def can(self, target: P) -> bool:
        """Whether ``to(target)`` is legal from the current phase."""
        return target in self.transitions[self.phase]

    def to(self, target: P) -> None:
        """Move to ``target``; raise ``IllegalTransition`` if the lifecycle forbids it."""
        if not self.can(target):
            raise IllegalTransition(f"{self.subject} cannot go from {self.phase.name} to {target.name}")
        self.phase = target

    @property
    def done(self) -> bool:
        """Whether the current phase is final (no transition leaves it)."""
        return not self.transitions[self.phase]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.phase.name})"


class CheckpointLifecycle(_Lifecycle[CheckpointPhase]):
    """Where one checkpoint is in its lifecycle."""

    transitions = CHECKPOINT_TRANSITIONS
    subject = "checkpoint"

    def __init__(self, phase: CheckpointPhase = CheckpointPhase.CREATED) -> None:
        super().__init__(phase)

    @property
    def status(self) -> CheckpointStatus | None:
        """The ``CheckpointStatus`` a file records for the current phase (see ``status_of``)."""
        return status_of(self.phase)


class FailureEventLifecycle(_Lifecycle[FailureEventPhase]):
    """Where one failure event is in its lifecycle."""

    transitions = FAILURE_EVENT_TRANSITIONS
    subject = "failure event"

    def __init__(self, phase: FailureEventPhase = FailureEventPhase.DETECTED) -> None:
        super().__init__(phase)
