"""The two lifecycles: every legal transition succeeds, every other pair raises and leaves the phase unchanged."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from scrapy_resilience.exceptions import IllegalTransition, ResilienceError
from scrapy_resilience.model.entities import CheckpointStatus
from scrapy_resilience.model.lifecycle import (
    CheckpointLifecycle,
    CheckpointPhase,
    FailureEventLifecycle,
    FailureEventPhase,
    status_of,
)

C = CheckpointPhase
F = FailureEventPhase

# Written out from data-model.md independently of the module's tables.
CHECKPOINT_LEGAL = {
    (C.CREATED, C.VALIDATING),
    (C.VALIDATING, C.COMPLETED),
    (C.VALIDATING, C.CORRUPTED),
    (C.COMPLETED, C.ACTIVE),
    (C.ACTIVE, C.EXPIRED),
    (C.CORRUPTED, C.ACTIVE),
    (C.ACTIVE, C.COMPLETED),
    (C.COMPLETED, C.EXPIRED),  # retention of a checkpoint no resume used (our addition)
}
FAILURE_EVENT_LEGAL = {
    (F.DETECTED, F.ANALYZING),
    (F.ANALYZING, F.RECOVERING),
    (F.ANALYZING, F.ABORTED),
    (F.RECOVERING, F.RESOLVED),
    (F.RECOVERING, F.FAILED),
    (F.FAILED, F.MANUAL_INTERVENTION),
}


def _pairs(phases: Any, legal: set[tuple[Any, Any]], want: bool) -> list[Any]:
    return [
        pytest.param(source, target, id=f"{source.name}->{target.name}")
        for source, target in itertools.product(phases, repeat=2)
        if ((source, target) in legal) is want
    ]


@pytest.mark.parametrize(("source", "target"), _pairs(C, CHECKPOINT_LEGAL, want=True))
def test_legal_checkpoint_transition(source: CheckpointPhase, target: CheckpointPhase) -> None:
    """A transition of the checkpoint lifecycle moves to the target phase."""
    lifecycle = CheckpointLifecycle(source)
    assert lifecycle.can(target)
    lifecycle.to(target)
    assert lifecycle.phase is target


@pytest.mark.parametrize(("source", "target"), _pairs(C, CHECKPOINT_LEGAL, want=False))
def test_illegal_checkpoint_transition(source: CheckpointPhase, target: CheckpointPhase) -> None:
    """Any other pair of checkpoint phases (staying put included) raises and keeps the phase."""
    lifecycle = CheckpointLifecycle(source)
    assert not lifecycle.can(target)
    with pytest.raises(IllegalTransition, match=f"from {source.name} to {target.name}"):
        lifecycle.to(target)
    assert lifecycle.phase is source


@pytest.mark.parametrize(("source", "target"), _pairs(F, FAILURE_EVENT_LEGAL, want=True))
def test_legal_failure_event_transition(source: FailureEventPhase, target: FailureEventPhase) -> None:
    """A transition of the failure-event lifecycle moves to the target phase."""
    lifecycle = FailureEventLifecycle(source)
    lifecycle.to(target)
    assert lifecycle.phase is target


@pytest.mark.parametrize(("source", "target"), _pairs(F, FAILURE_EVENT_LEGAL, want=False))
def test_illegal_failure_event_transition(source: FailureEventPhase, target: FailureEventPhase) -> None:
    """Any other pair of failure-event phases raises and keeps the phase."""
    lifecycle = FailureEventLifecycle(source)
    with pytest.raises(IllegalTransition, match=f"from {source.name} to {target.name}"):
        lifecycle.to(target)
    assert lifecycle.phase is source


@pytest.mark.parametrize(
    "path",
    [
        [C.VALIDATING, C.COMPLETED, C.ACTIVE, C.EXPIRED],
        [C.VALIDATING, C.CORRUPTED, C.ACTIVE, C.COMPLETED],
        [C.VALIDATING, C.COMPLETED, C.EXPIRED],
    ],
    ids=["used-then-expired", "corrupted-fallback", "expired-unused"],
)
def test_checkpoint_paths_of_the_data_model(path: list[CheckpointPhase]) -> None:
    """A new checkpoint starts CREATED and can walk each path of the diagram."""
    lifecycle = CheckpointLifecycle()
    assert lifecycle.phase is C.CREATED
    for phase in path:
        lifecycle.to(phase)
    assert lifecycle.phase is path[-1]


@pytest.mark.parametrize(
    ("path", "done"),
    [
        ([F.ANALYZING, F.RECOVERING, F.RESOLVED], True),
        ([F.ANALYZING, F.ABORTED], True),
        ([F.ANALYZING, F.RECOVERING, F.FAILED, F.MANUAL_INTERVENTION], True),
        ([F.ANALYZING, F.RECOVERING, F.FAILED], False),
    ],
)
def test_failure_event_paths_of_the_data_model(path: list[FailureEventPhase], done: bool) -> None:
    """A new failure event starts DETECTED; final phases are reported as done."""
    lifecycle = FailureEventLifecycle()
    assert lifecycle.phase is F.DETECTED
    assert not lifecycle.done
    for phase in path:
        lifecycle.to(phase)
    assert lifecycle.done is done


def test_status_of_maps_the_phases_a_file_can_record() -> None:
    """Phases that are also file statuses map onto CheckpointStatus; CREATED and VALIDATING have none."""
    assert {phase: status_of(phase) for phase in C} == {
        C.CREATED: None,
        C.VALIDATING: None,
        C.COMPLETED: CheckpointStatus.COMPLETED,
        C.CORRUPTED: CheckpointStatus.CORRUPTED,
        C.ACTIVE: CheckpointStatus.ACTIVE,
        C.EXPIRED: CheckpointStatus.EXPIRED,
    }
    lifecycle = CheckpointLifecycle(C.CORRUPTED)
    lifecycle.to(C.ACTIVE)
    assert lifecycle.status is CheckpointStatus.ACTIVE


def test_illegal_transition_is_a_resilience_error() -> None:
    """IllegalTransition derives from the package's base error, so one except clause catches all."""
    assert issubclass(IllegalTransition, ResilienceError)
