"""Failure classification: every built-in case, user patterns, and totality."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright._impl._errors import TargetClosedError
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from scrapy.core.downloader.handlers.http11 import TunnelError
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    ResponseDataLossError,
    UnsupportedURLSchemeError,
)
from twisted.internet import error as twisted_error
from twisted.web._newclient import ResponseNeverReceived

from scrapy_resilience.exceptions import BrowserDisconnectedError
from scrapy_resilience.model import patterns
from scrapy_resilience.model.entities import FailureCategory, FailureClassifier, FailureSeverity, RecoveryAction
from scrapy_resilience.retry.classify import Classification, classify, describe

RULES = FailureClassifier(
    transient_patterns=patterns.TRANSIENT_PATTERNS,
    permanent_patterns=patterns.PERMANENT_PATTERNS,
    retryable_status_codes=[408, 429, 500, 502, 503, 504, 522, 524],
    non_retryable_status_codes=[400, 401, 403, 404, 405, 410, 451],
)

NETWORK, BROWSER, SYSTEM, APPLICATION, EXTERNAL = (
    FailureCategory.NETWORK,
    FailureCategory.BROWSER,
    FailureCategory.SYSTEM,
    FailureCategory.APPLICATION,
    FailureCategory.EXTERNAL,
)


def _wrapped(outer: type[Exception], inner: BaseException) -> Exception:
    """An exception raised from another, as Scrapy 2.19 wraps Twisted's errors."""
    try:
        raise outer(str(inner)) from inner
    except Exception as exc:
        return exc


CASES: list[tuple[str, BaseException, bool, FailureCategory]] = [
    (
        "dns-nxdomain",
        CannotResolveHostError("DNS lookup failed: no results for hostname lookup: x.invalid."),
        False,
        NETWORK,
    ),
    (
        "dns-not-known",
        CannotResolveHostError("address 'x' not found: [Errno -2] Name or service not known."),
        False,
        NETWORK,
    ),
    ("dns-eai-again", CannotResolveHostError("[Errno -3] Temporary failure in name resolution"), True, NETWORK),
    (
        "dns-twisted-cause",
        _wrapped(CannotResolveHostError, twisted_error.DNSLookupError("no results for hostname lookup: y")),
        False,
        NETWORK,
    ),
    (
        "refused",
        DownloadConnectionRefusedError("Connection was refused by other side: 111: Connection refused."),
        True,
        NETWORK,
    ),
    ("timeout", DownloadTimeoutError("Getting http://x/ took longer than 180.0 seconds."), True, NETWORK),
    ("data-loss", ResponseDataLossError("Got data loss in http://x/."), True, NETWORK),
    (
        "failed",
        DownloadFailedError("[<Failure twisted.internet.error.ConnectionLost: Connection lost.>]"),
        True,
        NETWORK,
    ),
    (
        "cancelled-maxsize",
        DownloadCancelledError("Cancelling download of x: expected response size larger than download max size"),
        False,
        NETWORK,
    ),
    ("unsupported-scheme", UnsupportedURLSchemeError("Unsupported URL scheme 'foo'"), False, NETWORK),
    ("twisted-refused", twisted_error.ConnectionRefusedError(), True, NETWORK),
    ("twisted-lost", twisted_error.ConnectionLost(), True, NETWORK),
    ("twisted-done", twisted_error.ConnectionDone(), True, NETWORK),
    ("twisted-tcp-timeout", twisted_error.TCPTimedOutError(), True, NETWORK),
    ("twisted-timeout", twisted_error.TimeoutError(), True, NETWORK),
    ("never-received", ResponseNeverReceived([]), True, NETWORK),
    ("tunnel", TunnelError("Could not open CONNECT tunnel with proxy"), True, NETWORK),
    ("tls-verify", OSError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), False, NETWORK),
    ("reset-errno", ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), True, NETWORK),
    ("unreachable-errno", OSError(errno.EHOSTUNREACH, "No route to host"), True, NETWORK),
    ("emfile", OSError(errno.EMFILE, "Too many open files"), True, SYSTEM),
    ("enospc", OSError(errno.ENOSPC, "No space left on device"), False, SYSTEM),
    ("memory", MemoryError(), False, SYSTEM),
    ("pw-timeout", PlaywrightTimeoutError("Timeout 30000ms exceeded."), True, BROWSER),
    ("pw-nxdomain", PlaywrightError("net::ERR_NAME_NOT_RESOLVED at http://x.invalid/"), False, BROWSER),
    ("pw-refused", PlaywrightError("net::ERR_CONNECTION_REFUSED at http://127.0.0.1:1/"), True, BROWSER),
    ("pw-reset", PlaywrightError("net::ERR_CONNECTION_RESET at http://x/"), True, BROWSER),
    ("pw-empty", PlaywrightError("net::ERR_EMPTY_RESPONSE at http://x/"), True, BROWSER),
    ("pw-cert", PlaywrightError("net::ERR_CERT_AUTHORITY_INVALID at https://x/"), False, BROWSER),
    ("pw-target-closed", TargetClosedError(), True, BROWSER),
    ("pw-browser-closed", PlaywrightError("Browser has been closed"), True, BROWSER),
    ("pw-page-crashed", PlaywrightError("Page crashed"), True, BROWSER),
    ("pw-unknown", PlaywrightError("something new went wrong"), True, BROWSER),
    ("browser-disconnected", BrowserDisconnectedError("Browser closed under http://x/: ..."), True, BROWSER),
    ("programming-key", KeyError("price"), False, APPLICATION),
    ("programming-type", TypeError("unsupported operand"), False, APPLICATION),
    ("runtime", RuntimeError("Failed to download http://x/file.pdf"), False, APPLICATION),
]


@pytest.mark.parametrize(("name", "exc", "transient", "category"), CASES, ids=[case[0] for case in CASES])
def test_builtin_exception_cases(name: str, exc: BaseException, transient: bool, category: FailureCategory) -> None:
    """Each built-in exception case gets the documented verdict and category."""
    verdict = classify(exc, RULES)
    assert (verdict.transient, verdict.category) == (transient, category), verdict.reason
    assert verdict.recovery_action is (RecoveryAction.RETRY if transient else verdict.recovery_action)
    if not transient:
        assert verdict.recovery_action is not RecoveryAction.RETRY


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 522, 524])
def test_retryable_statuses_are_transient(status: int) -> None:
    """The contract's retryable codes are transient and retried."""
    verdict = classify(status, RULES)
    assert verdict.transient and verdict.recovery_action is RecoveryAction.RETRY


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 451, 418, 501, 505])
def test_other_error_statuses_are_permanent(status: int) -> None:
    """Listed non-retryable codes and unlisted error codes alike are permanent."""
    verdict = classify(status, RULES)
    assert not verdict.transient and verdict.recovery_action is RecoveryAction.SKIP
    assert verdict.category is EXTERNAL
    assert verdict.severity is (FailureSeverity.MEDIUM if status >= 500 else FailureSeverity.LOW)


def test_success_status_is_not_a_failure() -> None:
    """A status below 400 classifies as a non-failure (skip, low)."""
    verdict = classify(200, RULES)
    assert not verdict.transient and verdict.severity is FailureSeverity.LOW
    assert "not a failure" in verdict.reason


def test_permanent_patterns_win_over_transient() -> None:
    """A message matching both lists is permanent."""
    rules = FailureClassifier(transient_patterns=["flaky"], permanent_patterns=["forever"])
    assert not classify(ValueError("flaky but forever"), rules).transient
    assert classify(OSError("flaky"), rules).transient


def test_user_patterns_override_type_defaults() -> None:
    """User patterns can make a network error permanent and a programming error transient."""
    rules = FailureClassifier(transient_patterns=[r"^KeyError: 'session'"], permanent_patterns=[r"(?i)quota exceeded"])
    assert classify(KeyError("session"), rules).transient
    assert not classify(KeyError("price"), rules).transient
    assert not classify(DownloadFailedError("API quota exceeded"), rules).transient


def test_user_status_codes() -> None:
    """User code lists decide which statuses are retried."""
    rules = FailureClassifier(retryable_status_codes=[403], non_retryable_status_codes=[503])
    assert classify(403, rules).transient
    assert not classify(503, rules).transient


def test_patterns_match_type_and_message() -> None:
    """Patterns see ``"ExceptionType: message"``."""
    assert describe(DownloadTimeoutError("slow")) == "DownloadTimeoutError: slow"
    rules = FailureClassifier(permanent_patterns=[r"^DownloadTimeoutError: slow$"])
    assert not classify(DownloadTimeoutError("slow"), rules).transient


class _BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no string for you")


def test_broken_str_does_not_break_classification() -> None:
    """An exception whose __str__ raises is still classified."""
    assert classify(_BrokenStr(), RULES).category is APPLICATION


def _valid(verdict: Classification) -> bool:
    return (
        isinstance(verdict.transient, bool)
        and isinstance(verdict.category, FailureCategory)
        and isinstance(verdict.severity, FailureSeverity)
        and isinstance(verdict.recovery_action, RecoveryAction)
        and bool(verdict.reason)
        and (verdict.recovery_action is RecoveryAction.RETRY) == verdict.transient
    )


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_totality_for_any_status(status: int) -> None:
    """Any integer status gives a valid Classification."""
    assert _valid(classify(status, RULES))


EXCEPTION_TYPES = [OSError, ValueError, RuntimeError, DownloadFailedError, PlaywrightError, ConnectionResetError]


@given(st.sampled_from(EXCEPTION_TYPES), st.text())
def test_totality_for_any_message(exc_type: type[Exception], message: str) -> None:
    """Any exception with any message gives a valid Classification."""
    assert _valid(classify(exc_type(message), RULES))
