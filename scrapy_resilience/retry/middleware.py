"""The retry downloader middleware: classify, back off, hold, re-inject.

It takes the place of Scrapy's RetryMiddleware (order 550). For a failed
download (a status of 400 or more, or an exception) it:

1. tells the site's health (``health.SiteHealth``) the outcome of every
   attempt, and classifies the failure (``classify.classify``); permanent
   failures, requests with ``dont_retry`` and non-idempotent methods are not
   retried; a request whose whole site is down (not a URL failing on its own)
   is not retried either but waits for the site, *keeping its attempts*: an
   outage of any length costs no request its retries;
2. builds the retry with Scrapy's ``get_retry_request(..., stats_base_key="retry")``,
   so ``retry/*`` stats and ``max_retry_times`` keep their meaning;
3. draws its delay (``backoff.retry_delay``; a ``Retry-After`` is a minimum);
4. holds it *outside* the downloader until due (``holding.HeldRequests``): a
   waiting request holds neither a download slot nor a ``CONCURRENT_REQUESTS``
   place, no timer blocks the reactor, and the spider stays open meanwhile.

Before a request is sent, the site's health may keep it back (a Retry-After
pause, a site that is down): it then waits outside the downloader too, parked
for its slot until the health lets it through. Testing mode
(``scrapy_resilience.testing``) leaves the health out, as it leaves out waits.

Every failure is recorded as a FailureEvent whose ``correlation_id`` (meta
``resilience_correlation_id``) follows the request across its retries. An
unknown ``meta["resilience_policy"]`` is a programming error: the request fails
at once with a ``ConfigError`` naming the known policies, rather than being
crawled with a policy the user did not ask for.
"""

from __future__ import annotations

import random
import time
import traceback
import uuid
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response
from scrapy.utils.response import response_status_message

from scrapy_resilience import stats, testing
from scrapy_resilience.events.recorder import get_recorder
from scrapy_resilience.exceptions import BrowserDisconnectedError, ConfigError, SiteDownError
from scrapy_resilience.health import site_health
from scrapy_resilience.meta import CORRELATION_ID_KEY, POLICY_KEY, RETRY_UNSAFE_KEY
from scrapy_resilience.model.entities import FailureClassifier, FailureSeverity, RecoveryAction, RetryPolicy
from scrapy_resilience.retry import holding
from scrapy_resilience.retry.backoff import parse_retry_after, retry_delay
from scrapy_resilience.retry.classify import Classification, classify
from scrapy_resilience.settings import RetryConfig

# RFC 9110 §9.2.2: only these may be repeated without asking the user.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})



class RetryMiddleware:
    """Downloader middleware; see the module docstring."""

    def __init__(self, crawler: Crawler) -> None:
        config = RetryConfig.from_settings(crawler.settings)
        if not config.enabled:
            raise NotConfigured("RESILIENCE_RETRY_ENABLED or RESILIENCE_ENABLED is False")
        self.crawler = crawler
        self.config = config
        self.classifier = FailureClassifier(
            transient_patterns=config.transient_patterns,
            permanent_patterns=config.permanent_patterns,
            retryable_status_codes=sorted(config.retry_http_codes),
            non_retryable_status_codes=sorted(config.non_retryable_http_codes),
        )
        self.default_policy = self._policy_from(
            "default",
            {
                "max_attempts": config.max_attempts,
                "base_delay": config.base_delay,
                "multiplier": config.multiplier,
                "max_delay": config.max_delay,
                "jitter_factor": config.jitter_factor,
            },
        )
        self.policies = {name: self._policy_from(name, fields) for name, fields in config.policies.items()}
        self.priority_adjust = crawler.settings.getint("RETRY_PRIORITY_ADJUST")
        self.rng = random.Random()
        self.recorder = get_recorder(crawler)
        self.health = site_health(crawler)
        self.held = holding.HeldRequests(crawler, self.health.holds_back)
        self.health.parking = self.held

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RetryMiddleware:
        return cls(crawler)

    def _policy_from(self, name: str, fields: dict[str, Any]) -> RetryPolicy:
        try:
            return RetryPolicy(name=name, failure_classifier=self.classifier, **fields)
        except ValueError as exc:  # e.g. max_delay below base_delay
            setting = f"RESILIENCE_RETRY_POLICIES[{name!r}]" if name != "default" else "RESILIENCE_RETRY_MAX_DELAY"
            raise ConfigError(setting, fields, str(exc)) from None

    # Downloader middleware hooks

    def process_request(self, request: Request) -> Request | None:
        name = request.meta.get(POLICY_KEY)
        if name is not None and name not in self.policies:
            known = ", ".join(sorted(self.policies)) or "none are defined"
            raise ConfigError(f"meta[{POLICY_KEY!r}]", name, "a policy of RESILIENCE_RETRY_POLICIES: " + known)
        if testing.is_testing() or self.health.admits(request):
            return None
        return self._park(request)

    def process_response(self, request: Request, response: Response) -> Request | Response:
        status = response.status
        if status < 400:
            if not testing.is_testing():
                self.health.answered(request)
            return response
        retry_after = None
        header = response.headers.get(b"Retry-After")
        if header is not None:
            retry_after = parse_retry_after(header, time.time())
        if not testing.is_testing():
            self.health.outcome(request, response, retry_after)
        verdict = classify(status, self.classifier)
        details = {"status": status}
        retry = self._retry(request, response_status_message(status), verdict, retry_after, details, "")
        return retry if retry is not None else response

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if isinstance(exception, IgnoreRequest):
            return None
        if isinstance(exception, SiteDownError):  # never sent: it waits for its site, no attempt spent
            return self._park(request.replace(dont_filter=True))
        # A browser that died under the request says nothing about the site.
        if not testing.is_testing() and not isinstance(exception, BrowserDisconnectedError):
            self.health.outcome(request, exception)
        verdict = classify(exception, self.classifier)
        details = {"exception": type(exception).__module__ + "." + type(exception).__qualname__}
        stack = "".join(traceback.format_exception(exception))
        return self._retry(request, exception, verdict, None, details, stack)

    # The decision

    def _retry(
        self,
        request: Request,
        reason: str | Exception,
        verdict: Classification,
        retry_after: float | None,
        details: dict[str, Any],
        stack: str,
    ) -> Request | None:
        meta = request.meta
        correlation_id = meta.setdefault(CORRELATION_ID_KEY, uuid.uuid4().hex)
        context: dict[str, Any] = {
            "url": request.url,
            "method": request.method,
            "attempt": meta.get("retry_times", 0) + 1,
            "reason": verdict.reason,
            **details,
        }
        why_not = self._why_not_retry(request, verdict)
        if why_not is not None:
            if not verdict.transient:
                self._inc(stats.RETRY_PERMANENT)
            context["not_retried"] = why_not
            self._record(
                verdict,
                verdict.recovery_action if not verdict.transient else RecoveryAction.SKIP,
                str(reason),
                context,
                stack,
                correlation_id,
            )
            return None
        if not testing.is_testing() and self.health.down_for(request):
            context["waits_for_site"] = True
            self._record(verdict, RecoveryAction.RETRY, str(reason), context, stack, correlation_id)
            return self._park(request.replace(dont_filter=True))
        policy = self.policies[meta[POLICY_KEY]] if POLICY_KEY in meta else self.default_policy
        max_retry_times = meta.get("max_retry_times", policy.max_attempts - 1)
        max_retry_times = testing.max_attempts(max_retry_times + 1) - 1
        spider = self.crawler.spider
        assert spider is not None  # downloads only happen while a spider is open
        retry = get_retry_request(
            request,
            spider=spider,
            reason=reason,
            max_retry_times=max_retry_times,
            priority_adjust=meta.get("priority_adjust", self.priority_adjust),
            stats_base_key="retry",
        )
        if retry is None:
            self._inc(stats.RETRY_GAVE_UP)
            context["gave_up_after"] = max_retry_times + 1
            self._record(
                verdict,
                RecoveryAction.SKIP,
                f"gave up: {reason}",
                context,
                stack,
                correlation_id,
                severity=FailureSeverity.HIGH,
            )
            return None
        delay = 0.0
        if not testing.is_testing():
            delay = retry_delay(retry.meta["retry_times"], policy, self.rng, retry_after, self.config.retry_after_max)
        self._inc(stats.RETRY_SCHEDULED)
        self._inc(stats.RETRY_DELAY_SECONDS, delay)
        context["delay"] = delay
        self._record(verdict, RecoveryAction.RETRY, str(reason), context, stack, correlation_id)
        if delay > 0:
            self.held.mark(retry, time.time() + delay)
        return retry

    def _park(self, request: Request) -> Request:
        """Hand ``request`` back to the engine to wait for its slot (``holding``), not spending an attempt."""
        self.held.mark(request, self.health.not_before(request), self.health.slot(request))
        return request

    def _why_not_retry(self, request: Request, verdict: Classification) -> str | None:
        if not verdict.transient:
            return "permanent"
        if request.meta.get("dont_retry", False):
            return "dont_retry"
        if request.method.upper() not in IDEMPOTENT_METHODS and not request.meta.get(RETRY_UNSAFE_KEY, False):
            return f"{request.method} is not idempotent (set meta {RETRY_UNSAFE_KEY!r} to retry it)"
        return None

    def _record(
        self,
        verdict: Classification,
        action: RecoveryAction,
        message: str,
        context: dict[str, Any],
        stack: str,
        correlation_id: str,
        severity: FailureSeverity | None = None,
    ) -> None:
        self.recorder.record(
            category=verdict.category,
            severity=severity or verdict.severity,
            recovery_action=action,
            source="retry",
            message=message,
            context=context,
            stack_trace=stack,
            correlation_id=correlation_id,
        )

    def _inc(self, key: str, value: float = 1) -> None:
        if self.crawler.stats is not None:
            # get+set rather than inc_value, whose signature admits ints only.
            self.crawler.stats.set_value(key, self.crawler.stats.get_value(key, 0) + value)

    # Held retries (the checkpoint extension uses these two)

    def hold(self, request: Request, not_before: float) -> None:
        """Keep ``request`` out of the crawl until the wall-clock time ``not_before``, then crawl it."""
        self.held.hold(request, not_before)

    def held_requests(self) -> list[tuple[Request, float]]:
        """The requests waiting for their backoff, with their ``not_before`` (epoch seconds)."""
        return self.held.listed()
