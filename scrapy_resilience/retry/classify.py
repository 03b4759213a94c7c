"""Failure classification: a pure function from an outcome to a verdict.

``classify(outcome, classifier)`` takes an HTTP status code or an exception and
the data model's FailureClassifier (``transient_patterns``,
``permanent_patterns``, ``retryable_status_codes``,
``non_retryable_status_codes``) and returns a ``Classification``. It never
raises and does no I/O, so it is tested without Twisted, property-based.

Rules, in order:

1. A status code is transient when it is in ``retryable_status_codes``;
   anything else is permanent (``non_retryable_status_codes`` only makes that
   explicit: like Scrapy, only listed codes are retried). A status is the
   site's own answer, so its category is EXTERNAL (NETWORK for 408); a
   permanent 4xx has severity LOW, a permanent 5xx MEDIUM. Codes below 400 are
   not failures at all (``SKIP``, LOW); the middleware does not ask.
2. For an exception the text ``"ExceptionType: message"`` of the exception
   and of the exception it was raised from (Scrapy 2.19 wraps Twisted errors
   and keeps the original as ``__cause__``) is matched against the permanent
   patterns first, then the transient ones: permanent wins.
3. An exception that matches neither is judged by its type: network and
   browser errors (``OSError``, Twisted and Scrapy download errors, Playwright
   errors, ``BrowserDisconnectedError``) are transient, because a crawl loses less by retrying a flaky
   network error a few times than by dropping the page; any other exception
   is a programming error (``TypeError``, ``KeyError``...) and is permanent:
   retrying the same code on the same input fails the same way.
"""

from __future__ import annotations

import errno
import functools
import re

import attrs

from scrapy_resilience.exceptions import BrowserDisconnectedError
from scrapy_resilience.model.entities import FailureCategory, FailureClassifier, FailureSeverity, RecoveryAction


@attrs.frozen(kw_only=True)
class Classification:
    """The verdict on one failure."""

    transient: bool
    category: FailureCategory
    severity: FailureSeverity
    recovery_action: RecoveryAction
    reason: str


# errno values that say "the machine is short of something" rather than "the
# network failed": retrying later may work, but the crawl itself is in trouble.
_SYSTEM_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_SYSTEM_PERMANENT = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS}

# Modules whose exceptions are network failures even when they are not
# OSError subclasses (Twisted's ConnectError, ResponseFailed, Scrapy's
# Download*Error, TunnelError, pyOpenSSL's SSL.Error).
_NETWORK_MODULES = ("twisted.internet.error", "twisted.web", "OpenSSL", "scrapy.core.downloader", "h2.")
_SCRAPY_NETWORK = {
    "CannotResolveHostError",
    "DownloadConnectionRefusedError",
    "DownloadFailedError",
    "DownloadTimeoutError",
    "ResponseDataLossError",
    "DownloadCancelledError",
    "UnsupportedURLSchemeError",
}


@functools.lru_cache(maxsize=64)
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Compiled once per pattern list (each may carry its own inline flags)."""
    return tuple(re.compile(pattern) for pattern in patterns)


def describe(exc: BaseException) -> str:
    """``"ExceptionType: message"``, the text the patterns are matched against."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not break classification
        message = ""
    return type(exc).__name__ + ": " + message


def _texts(exc: BaseException) -> list[str]:
    texts = [describe(exc)]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        texts.append(describe(cause))
    return texts


def _first_match(patterns: tuple[re.Pattern[str], ...], texts: list[str]) -> str | None:
    for pattern in patterns:
        for text in texts:
            match = pattern.search(text)
            if match:
                return match.group(0)
    return None


def _is_browser(exc: BaseException) -> bool:
    if isinstance(exc, BrowserDisconnectedError):
        return True
    return any(cls.__module__.startswith("playwright") for cls in type(exc).__mro__)


def _is_network(exc: BaseException) -> bool:
    for cls in type(exc).__mro__:
        if cls.__name__ in _SCRAPY_NETWORK and cls.__module__ == "scrapy.exceptions":
            return True
        if cls.__module__.startswith(_NETWORK_MODULES):
            return True
    return isinstance(exc, OSError)


def _category(exc: BaseException) -> FailureCategory:
    if _is_browser(exc):
        return FailureCategory.BROWSER
    if isinstance(exc, OSError) and exc.errno in _SYSTEM_TRANSIENT | _SYSTEM_PERMANENT:
        return FailureCategory.SYSTEM
    if isinstance(exc, MemoryError):
        return FailureCategory.SYSTEM
    if _is_network(exc):
        return FailureCategory.NETWORK
    return FailureCategory.APPLICATION


def _verdict(transient: bool, category: FailureCategory, reason: str) -> Classification:
    if transient:
        severity = FailureSeverity.HIGH if category is FailureCategory.SYSTEM else FailureSeverity.LOW
        action = RecoveryAction.RETRY
    elif category is FailureCategory.SYSTEM:
        severity, action = FailureSeverity.CRITICAL, RecoveryAction.MANUAL
    elif category is FailureCategory.APPLICATION:
        severity, action = FailureSeverity.HIGH, RecoveryAction.MANUAL
    else:
        severity, action = FailureSeverity.MEDIUM, RecoveryAction.SKIP
    return Classification(
        transient=transient, category=category, severity=severity, recovery_action=action, reason=reason
    )


def classify_status(status: int, rules: FailureClassifier) -> Classification:
    """Classify an HTTP response status: the site's own answer, so EXTERNAL."""
    if status in set(rules.retryable_status_codes):
        category = FailureCategory.NETWORK if status == 408 else FailureCategory.EXTERNAL
        return _verdict(True, category, f"status {status} is retryable")
    if status < 400:
        reason = f"status {status} is not a failure"
    elif status in set(rules.non_retryable_status_codes):
        reason = f"status {status} is non-retryable"
    else:
        reason = f"status {status} is not retryable"
    # A 404 is routine on a real site; a 5xx the server did not mark as
    # temporary is a bigger sign that something is wrong over there.
    severity = FailureSeverity.MEDIUM if status >= 500 else FailureSeverity.LOW
    return Classification(
        transient=False,
        category=FailureCategory.EXTERNAL,
        severity=severity,
        recovery_action=RecoveryAction.SKIP,
        reason=reason,
    )


def classify_exception(exc: BaseException, rules: FailureClassifier) -> Classification:
    """Classify an exception raised by a download (or by a middleware below us)."""
    texts = _texts(exc)
    category = _category(exc)
    hit = _first_match(_compile(tuple(rules.permanent_patterns)), texts)
    if hit is not None:
        return _verdict(False, category, f"permanent pattern matched {hit!r}")
    hit = _first_match(_compile(tuple(rules.transient_patterns)), texts)
    if hit is not None:
        return _verdict(True, category, f"transient pattern matched {hit!r}")
    if isinstance(exc, OSError) and exc.errno in _SYSTEM_PERMANENT:
        return _verdict(False, category, f"errno {errno.errorcode.get(exc.errno, exc.errno)}")
    if category is FailureCategory.APPLICATION or isinstance(exc, MemoryError):
        return _verdict(False, category, f"{type(exc).__name__} is not a network error")
    return _verdict(True, category, f"{type(exc).__name__} is a {category.value} error")


def classify(outcome: int | BaseException, rules: FailureClassifier) -> Classification:
    """Classify a status code or an exception (see the module docstring)."""
    if isinstance(outcome, BaseException):
        return classify_exception(outcome, rules)
    return classify_status(int(outcome), rules)
