"""The FailureRecorder: one per crawler; counted, signalled, and in the job's event log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from retry_helpers import crawl
from scrapy.utils.test import get_crawler

from scrapy_resilience import signals, stats
from scrapy_resilience.events.log import EventLog
from scrapy_resilience.events.recorder import get_recorder
from scrapy_resilience.model.entities import FailureCategory, FailureEvent, FailureSeverity, RecoveryAction


def test_one_recorder_per_crawler() -> None:
    """get_recorder returns the same recorder for a crawler and another for another crawler."""
    first, second = get_crawler(), get_crawler()
    assert get_recorder(first) is get_recorder(first)
    assert get_recorder(first) is not get_recorder(second)


def test_record_builds_counts_and_signals() -> None:
    """record() returns a valid FailureEvent, counts it by category and sends failure_recorded."""
    crawler = get_crawler(settings_dict={"RESILIENCE_JOB_ID": "job-7"})
    assert crawler.stats is not None
    crawler.stats.open_spider()
    received: list[FailureEvent] = []

    def on_event(event: FailureEvent) -> None:
        received.append(event)

    crawler.signals.connect(on_event, signal=signals.failure_recorded)
    event = get_recorder(crawler).record(
        category=FailureCategory.BROWSER,
        severity=FailureSeverity.HIGH,
        recovery_action=RecoveryAction.RESTART,
        source="monitor",
        message="browser crashed",
        context={"pid": 42},
        correlation_id="abc",
    )
    assert received == [event]
    assert event.context == {"pid": 42, "job_id": "job-7"}
    assert event.correlation_id == "abc" and event.source == "monitor"
    assert crawler.stats.get_value(stats.failures("browser")) == 1


@pytest_twisted.ensureDeferred
async def test_events_reach_the_event_log(demo_site: Any, tmp_path: Path) -> None:
    """With a checkpoint directory every recorded event is in its event log when the crawl ends."""
    demo_site.reset()
    settings = {"RESILIENCE_CHECKPOINT_DIR": str(tmp_path), "RESILIENCE_RETRY_MAX_ATTEMPTS": 3}
    # Three URLs: 9 failures in a row, fewer than the 12 that would judge the
    # whole site down (its requests would then wait for it, not give up).
    specs = [(demo_site.url + f"/fault/status/503?key=log{i}", {}) for i in range(3)]
    result = await crawl(specs, settings)
    logged = EventLog(tmp_path).read()
    assert len(result.events) == 9  # 3 requests x (2 retries + 1 give-up)
    assert [event.id for event in logged] == [event.id for event in result.events]
    assert {event.context["job_id"] for event in logged} == {"urls"}


@pytest_twisted.ensureDeferred
async def test_no_event_log_without_a_directory(demo_site: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """Without RESILIENCE_CHECKPOINT_DIR nothing is written anywhere."""
    demo_site.reset()
    monkeypatch.chdir(tmp_path)
    result = await crawl([(demo_site.url + "/fault/status/404?key=nolog", {})], {"HTTPERROR_ALLOW_ALL": True})
    assert len(result.events) == 1
    assert list(tmp_path.iterdir()) == []
