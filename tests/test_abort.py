"""The abort policy's arithmetic and its actions: window, judge, outcomes, ordered steps, webhook."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.settings import Settings
from scrapy.utils.defer import deferred_f_from_coro_f
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from webhook_receiver import WebhookReceiver

from scrapy_resilience import abort
from scrapy_resilience.abort import AbortJudge, FailureWindow, is_failure, run_actions
from scrapy_resilience.models import AbortAction, AbortActionType, AbortPolicy
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
        assert (judge.operation(failed) == abort.REASON_FAILURE_RATE) is expected


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
    assert judge.crash() == abort.REASON_CONSECUTIVE_CRASHES
    assert (
        AbortJudge(AbortPolicy(name="p", consecutive_crashes=3), Clock()).crash(3) == abort.REASON_CONSECUTIVE_CRASHES
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
    assert is_failure(abort.RequestAfterAbort(), codes) is None


def test_policy_from_settings_keeps_the_action_order():
    """RESILIENCE_ABORT_ACTIONS become AbortActions in the configured order, each with its timeout."""
    config = AbortConfig.from_settings(
        Settings({"RESILIENCE_ABORT_ACTIONS": "notify,shutdown", "RESILIENCE_ABORT_FAILURE_RATE": 40})
    )
    policy = abort.policy_from_config(config)
    assert [a.action_type for a in policy.abort_actions] == [AbortActionType.NOTIFY, AbortActionType.SHUTDOWN]
    assert all(a.timeout == abort.ACTION_TIMEOUTS[a.action_type] for a in policy.abort_actions)
    assert policy.failure_rate_threshold == 40 and policy.consecutive_crashes is None


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
        status = await abort.post_json(receiver.url, {"reason": "resilience_failure_rate", "n": 3})
    assert status == 204
    assert receiver.documents == [{"reason": "resilience_failure_rate", "n": 3}]
