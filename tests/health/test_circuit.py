"""The circuit of one site, as a pure state machine (no Scrapy, no clock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scrapy_resilience.health.circuit import TRIP, Circuit, Release, State


def circuit() -> Circuit:
    return Circuit(probe_base=1.0, probe_max=8.0, probe_timeout=20.0)


def opened(now: float = 0.0) -> Circuit:
    """A circuit that TRIP failures at ``now`` just opened."""
    c = circuit()
    for _ in range(TRIP):
        c.failure(now, evidence=True)
    assert c.state is State.OPEN
    return c


def test_trip_failures_in_a_row_open_the_circuit_and_an_answer_resets_the_count():
    """TRIP failures of the site in a row open it; one answer in between starts the count again."""
    c = circuit()
    for _ in range(TRIP - 1):
        c.failure(0.0, evidence=True)
    c.success(sent_at=0.0)
    for _ in range(TRIP - 1):
        c.failure(0.0, evidence=True)
    assert c.state is State.CLOSED
    c.failure(0.0, evidence=True)
    assert c.state is State.OPEN
    assert not c.admits(0.5)


@given(st.lists(st.booleans(), max_size=200))
def test_failures_that_are_not_the_sites_fault_never_open_it(answers):
    """Failures of URLs known to fail on their own never open the circuit, whatever comes between."""
    c = circuit()
    for answered in answers:
        if answered:
            c.success(sent_at=0.0)
        else:
            c.failure(0.0, evidence=False)
    assert c.state is State.CLOSED


def test_one_probe_at_a_time_and_its_answer_releases_everything():
    """An open circuit lets one probe through at the probe time; the site's answer closes it."""
    c = opened(10.0)
    assert c.next_check() == 11.0
    assert c.tick(11.0) is Release.ONE
    assert c.admits(11.0)  # the probe
    assert c.state is State.HALF_OPEN
    assert not c.admits(11.1)  # only one
    assert c.success(sent_at=11.0) is Release.ALL
    assert c.state is State.CLOSED
    assert c.admits(11.2)


def test_failed_probes_double_the_interval_up_to_the_cap_and_confirm_the_outage():
    """Each failed probe doubles the wait for the next one, up to probe_max; the first confirms."""
    c = opened()
    assert not c.confirmed
    now, gaps = 0.0, []
    for _ in range(6):
        now = c.next_check()
        c.tick(now)
        assert c.admits(now)
        c.failure(now, evidence=True)
        gaps.append(c.until - now)
    assert c.confirmed
    assert gaps == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_a_lost_probe_is_replaced_after_the_probe_timeout():
    """A probe that never comes back lets another request probe after probe_timeout."""
    c = opened()
    c.tick(1.0)
    assert c.admits(1.0)
    assert c.next_check() == 21.0
    assert c.tick(21.0) is Release.ONE
    assert c.admits(21.0)


def test_a_probe_of_a_url_that_fails_on_its_own_lets_another_probe_after_the_interval():
    """A failed probe that says nothing about the site (a known-bad URL): another probes, one interval later."""
    c = opened()
    c.tick(1.0)
    assert c.admits(1.0)
    assert c.failure(1.5, evidence=False) is Release.NOTHING
    assert not c.confirmed and c.state is State.OPEN
    assert c.next_check() == 2.5
    assert c.tick(2.5) is Release.ONE and c.admits(2.5)


def test_retry_after_pauses_until_that_moment_once_then_the_circuit_closes():
    """A Retry-After pauses the slot until its moment; a later one extends it, an earlier one does not."""
    c = circuit()
    c.retry_after(100.0, 2.5)
    assert c.state is State.COOLING
    c.retry_after(100.5, 1.0)  # ends earlier: no change
    assert c.until == 102.5
    assert not c.admits(102.4)
    assert c.next_check() == 102.5
    assert c.tick(102.5) is Release.ALL
    assert c.state is State.CLOSED
    assert c.admits(102.5)


def test_retry_after_while_down_delays_the_next_probe():
    """A site that is down and asks for a pause is not probed before the pause ends."""
    c = opened()
    c.retry_after(0.0, 30.0)
    assert c.state is State.OPEN
    assert c.next_check() == 30.0


def test_an_answer_to_a_request_sent_before_the_circuit_opened_does_not_close_it():
    """A page in flight when the site went down may still arrive: it does not close the circuit."""
    c = opened(10.0)
    assert c.success(sent_at=9.8) is Release.NOTHING
    assert c.state is State.OPEN and c.holds_back()
    assert c.success(sent_at=10.5) is Release.ALL
    assert not c.holds_back()


def test_half_way_to_opening_answers_sent_before_the_run_do_not_break_it():
    """Pages in flight when the site went down answer late: past TRIP/2 failures they no longer reset the run."""
    c = circuit()
    c.failure(10.0, evidence=True)
    c.success(sent_at=9.9)  # early in the run: it still resets
    assert c.streak == 0
    for _ in range(TRIP // 2):
        c.failure(10.1, evidence=True)
    c.success(sent_at=10.0)  # sent before the run began
    assert c.streak == TRIP // 2
    c.success(sent_at=10.2)  # sent during the run: the site answers
    assert c.streak == 0

