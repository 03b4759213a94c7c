"""The abort policy's arithmetic and its actions: window, judge, outcomes, ordered steps, webhook, slot queues."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import scrapy
from hypothesis import given
from hypothesis import strategies as st
from scrapy import signals as scrapy_signals
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.settings import Settings
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from scrapy.utils.test import get_crawler
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from webhook_receiver import WebhookReceiver

from scrapy_resilience.exceptions import RequestAfterAbort
from scrapy_resilience.health import is_failure
from scrapy_resilience.model.entities import AbortAction, AbortActionType, AbortPolicy
from scrapy_resilience.monitor import halt
from scrapy_resilience.monitor.actions import post_json, run_actions
from scrapy_resilience.monitor.judge import (
    ACTION_TIMEOUTS,
    REASON_CONSECUTIVE_CRASHES,
    REASON_FAILURE_RATE,
    AbortJudge,
    FailureWindow,
    policy_from_config,
)
from scrapy_resilience.settings import AbortConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


events = st.lists(st.tuples(st.floats(min_value=0, max_value=50, allow_nan=False), st.booleans()), max_size=200)


@given(events, st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=120))
def test_window_counts_the_last_size_operations_within_duration(steps, size, duration):
    """The window holds exactly the last ``size`` outcomes that are at most ``duration`` s old."""
    clock = Clock()
    window = FailureWindow(size, duration, clock)
    history: list[tuple[float, bool]] = []
    for advance, failed in steps:
        clock.now += advance
        window.add(failed)
        history.append((clock.now, failed))
        expected = [f for t, f in history[-size:] if t >= clock.now - duration]
        assert window.counts() == (len(expected), sum(expected))


@given(st.lists(st.booleans(), max_size=100), st.integers(1, 30), st.floats(1, 100))
def test_judge_aborts_exactly_when_rate_is_above_limit_after_min_operations(outcomes, minimum, limit):
    """The judge says abort iff the window holds min_operations and the rate is strictly above the limit."""
    policy = AbortPolicy(name="p", failure_rate_threshold=limit, window_size=50, min_operations=minimum)
    judge = AbortJudge(policy, Clock())
    seen: list[bool] = []
    for failed in outcomes:
        seen.append(failed)
        window = seen[-50:]
        expected = len(window) >= minimum and 100.0 * sum(window) / len(window) > limit
        assert (judge.operation(failed) == REASON_FAILURE_RATE) is expected


def test_old_failures_leave_the_window():
    """Failures older than the window's duration stop counting."""
    clock = Clock()
    judge = AbortJudge(AbortPolicy(name="p", failure_rate_threshold=50, window_duration=60, min_operations=3), clock)
    assert judge.operation(True) is None and judge.operation(True) is None
    clock.now += 61
    assert [judge.operation(False) for _ in range(3)] == [None, None, None]
    assert judge.rate() == 0.0


def test_ten_percent_dead_links_never_abort_at_fifty_percent():
    """404s are successes: a site with 10% dead links stays far from a 50% threshold."""
    judge = AbortJudge(AbortPolicy(name="p", failure_rate_threshold=50, min_operations=20), Clock())
    codes = frozenset([408, 429, 500, 502, 503, 504])
    request = Request("http://127.0.0.1/x")
    for i in range(500):
        response = Response(request.url, status=404 if i % 10 == 0 else 200, request=request)
        assert judge.operation(bool(is_failure(response, codes))) is None


def test_consecutive_crashes_abort_and_a_served_page_resets_them():
    """N crashes in a row abort; a page served in between starts the count again."""
    judge = AbortJudge(AbortPolicy(name="p", consecutive_crashes=3), Clock())
    assert judge.crash() is None and judge.crash() is None
    judge.crash_free()
    assert judge.crash() is None and judge.crash() is None
    assert judge.crash() == REASON_CONSECUTIVE_CRASHES
    assert (
        AbortJudge(AbortPolicy(name="p", consecutive_crashes=3), Clock()).crash(3) == REASON_CONSECUTIVE_CRASHES
    )
    assert AbortJudge(AbortPolicy(name="p"), Clock()).crash(100) is None  # off


def test_what_is_a_failure():
    """Retryable statuses and exceptions fail; other statuses succeed; IgnoreRequest is no operation."""
    codes = frozenset({429, 500, 503})
    request = Request("http://127.0.0.1/")
    assert is_failure(Response(request.url, status=503), codes) is True
    assert is_failure(Response(request.url, status=429), codes) is True
    assert is_failure(Response(request.url, status=404), codes) is False
    assert is_failure(Response(request.url, status=200), codes) is False
    assert is_failure(TimeoutError(), codes) is True
    assert is_failure(ConnectionRefusedError(), codes) is True
    assert is_failure(IgnoreRequest(), codes) is None
    assert is_failure(RequestAfterAbort(), codes) is None


def test_policy_from_settings_keeps_the_action_order():
    """RESILIENCE_ABORT_ACTIONS become AbortActions in the configured order, each with its timeout."""
    config = AbortConfig.from_settings(
        Settings({"RESILIENCE_ABORT_ACTIONS": "notify,cleanup,shutdown", "RESILIENCE_ABORT_FAILURE_RATE": 40})
    )
    policy = policy_from_config(config)
    assert [(a.action_type, a.timeout) for a in policy.abort_actions] == [
        (AbortActionType.NOTIFY, ACTION_TIMEOUTS[AbortActionType.NOTIFY]),
        (AbortActionType.CLEANUP, ACTION_TIMEOUTS[AbortActionType.CLEANUP]),
        (AbortActionType.SHUTDOWN, 600),
    ]
    assert policy.failure_rate_threshold == 40 and policy.consecutive_crashes is None


def test_shutdown_timeout_comes_from_its_setting():
    """RESILIENCE_ABORT_SHUTDOWN_TIMEOUT is the SHUTDOWN action's timeout."""
    config = AbortConfig.from_settings(Settings({"RESILIENCE_ABORT_SHUTDOWN_TIMEOUT": "3"}))
    (shutdown,) = [
        a for a in policy_from_config(config).abort_actions if a.action_type is AbortActionType.SHUTDOWN
    ]
    assert shutdown.timeout == 3


class QueuedSpider(scrapy.Spider):
    """Sends ``count`` slow requests at once to one domain whose slot transfers one at a time."""

    name = "queued"

    async def start(self):
        for number in range(int(self.count)):
            yield scrapy.Request(f"{self.base}/fault/slow?delay=1&n={number}", self.parse, errback=self.refused)

    def parse(self, response):
        self.__dict__.setdefault("answered", []).append(response.url)

    def refused(self, failure):
        self.__dict__.setdefault("errors", []).append(failure.value)


@deferred_f_from_coro_f
async def test_fail_queued_requests_refuses_what_waits_in_the_slots_of_real_scrapy(demo_site):
    """Requests waiting in a download slot's queue fail with the exception, are never sent, and the crawl ends."""
    demo_site.reset()
    count = 8
    crawler = get_crawler(
        QueuedSpider,
        settings_dict={
            "CONCURRENT_REQUESTS": 16,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
            "RETRY_ENABLED": False,
            "TELNETCONSOLE_ENABLED": False,
        },
    )
    reached: list[Any] = []
    failed: list[int] = []  # what fail_queued_requests says it refused: the queues', then one by one

    def fail_the_queue() -> None:
        halt.fail_queued_requests(crawler.engine.downloader, lambda: RequestAfterAbort("test"), failed.append)

    def on_reached(request: Any) -> None:
        reached.append(request)
        if len(reached) == count:
            # Called before the downloader appends this request to the slot's queue: fail the queue just after.
            call_later(0, fail_the_queue)

    crawler.signals.connect(on_reached, signal=scrapy_signals.request_reached_downloader, weak=False)
    await maybe_deferred_to_future(crawler.crawl(base=demo_site.url, count=count))
    spider = crawler.spider
    answered, errors = spider.__dict__.get("answered", []), spider.__dict__.get("errors", [])
    refused = sum(failed)
    assert failed[0] >= 1  # the queues held some
    assert len(errors) == refused and all(isinstance(e, RequestAfterAbort) for e in errors)
    assert len(answered) + refused == count
    assert len(demo_site.log()) == len(answered)  # the refused ones never reached the site
    downloader = crawler.engine.downloader
    assert not downloader.active
    assert all(not slot.active and not slot.queue and not slot.transferring for slot in downloader.slots.values())
    assert crawler.stats.get_value("finish_reason") == "finished"
    # One taken from a slot's queue just before the decision meets the handler's refusal, counted too.
    with pytest.raises(RequestAfterAbort):
        await downloader.handlers.download_request_async(Request(f"{demo_site.url}/fault/slow?delay=1&n=late"))
    assert sum(failed) == refused + 1
    assert len(demo_site.log()) == len(answered)


@deferred_f_from_coro_f
async def test_actions_run_in_order_and_survive_failures_and_timeouts():
    """Steps run in the configured order; one that raises or overruns its timeout does not stop the next."""
    ran: list[str] = []

    async def step(name: str, behaviour: str = "ok") -> None:
        ran.append(name)
        if behaviour == "raise":
            raise RuntimeError("boom")
        if behaviour == "hang":
            await asyncio.Event().wait()

    actions = (
        AbortAction(action_type=AbortActionType.NOTIFY, timeout=1),
        AbortAction(action_type=AbortActionType.SAVE_STATE, timeout=1),
        AbortAction(action_type=AbortActionType.SHUTDOWN, timeout=1),
    )
    steps = {
        AbortActionType.NOTIFY: lambda: step("notify", "hang"),
        AbortActionType.SAVE_STATE: lambda: step("save_state", "raise"),
        AbortActionType.SHUTDOWN: lambda: step("shutdown"),
    }
    outcomes = await run_actions(actions, steps)
    assert ran == ["notify", "save_state", "shutdown"]
    assert outcomes == {"notify": "timeout", "save_state": "RuntimeError('boom')", "shutdown": "done"}


@deferred_f_from_coro_f
async def test_post_json_delivers_the_document():
    """The webhook receives the document as JSON through Twisted's client."""
    with WebhookReceiver() as receiver:
        status = await post_json(receiver.url, {"reason": "resilience_failure_rate", "n": 3})
    assert status == 204
    assert receiver.documents == [{"reason": "resilience_failure_rate", "n": 3}]
