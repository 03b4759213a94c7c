"""The ordered steps of giving up: each AbortActionType, run within its timeout."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from io import BytesIO
from typing import Any, cast

from scrapy.utils.defer import maybe_deferred_to_future
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer

from scrapy_resilience import signals
from scrapy_resilience.browser import detect as browsers
from scrapy_resilience.events.recorder import get_recorder
from scrapy_resilience.model.entities import (
    AbortAction,
    AbortActionType,
    FailureCategory,
    FailureSeverity,
    RecoveryAction,
)
from scrapy_resilience.monitor import halt
from scrapy_resilience.monitor.judge import ACTION_TIMEOUTS, REASON_CONSECUTIVE_CRASHES, REASON_FAILURE_RATE

logger = logging.getLogger(__name__)




async def post_json(url: str, document: Mapping[str, Any]) -> int:
    """POST ``document`` as JSON with Twisted's non-blocking client; the status code.

    The caller bounds it with the NOTIFY timeout, whose cancellation aborts the
    connection, so a receiver that never answers cannot hold the shutdown.
    """
    # Imported here, as Scrapy does: the add-on imports this module before
    # Scrapy installs the asyncio reactor, and a module-level import would install another.
    from twisted.internet import reactor

    body = json.dumps(document, sort_keys=True, default=str).encode()
    agent = Agent(reactor, connectTimeout=ACTION_TIMEOUTS[AbortActionType.NOTIFY])
    headers = Headers({b"Content-Type": [b"application/json"], b"User-Agent": [b"scrapy-resilience"]})
    # FileBodyProducer implements IBodyProducer through zope.interface, which mypy cannot see.
    producer = cast(IBodyProducer, FileBodyProducer(BytesIO(body)))
    response = await maybe_deferred_to_future(agent.request(b"POST", url.encode(), headers, producer))
    return int(response.code)


async def run_actions(
    actions: tuple[AbortAction, ...], steps: Mapping[AbortActionType, Callable[[], Awaitable[Any]]]
) -> dict[str, str]:
    """Run each action's step in order within its timeout; a failing step never stops the next.

    Returns the outcome of each step (``done``, ``timeout`` or the error) for the
    abort document and the log.
    """
    outcomes: dict[str, str] = {}
    for action in actions:
        name = action.action_type.value
        try:
            await asyncio.wait_for(steps[action.action_type](), timeout=action.timeout)
        except asyncio.TimeoutError:
            logger.error("Abort step %s did not finish within %ss; going on", name, action.timeout)
            outcomes[name] = "timeout"
        except Exception as exc:  # the shutdown must go on whatever one step does
            logger.error("Abort step %s failed: %r; going on", name, exc)
            outcomes[name] = repr(exc)
        else:
            outcomes[name] = "done"
    return outcomes


# The category of the CRITICAL event of an abort: a site that stopped
# answering is outside the crawl; crashes are the browser's; thresholds SYSTEM.
ABORT_CATEGORIES = {REASON_FAILURE_RATE: FailureCategory.EXTERNAL, REASON_CONSECUTIVE_CRASHES: FailureCategory.BROWSER}


class AbortSteps:
    """What each AbortActionType does for one crawl; ``run`` them in the policy's order.

    A SHUTDOWN that overruns its timeout is forced (``halt.force_stop``): the
    process stops, with the final checkpoint of SAVE_STATE already written.
    """

    def __init__(
        self,
        crawler: Any,
        notify_url: str | None,
        checkpoints: Callable[[], Any],
        stop_readings: Callable[[], None],
    ) -> None:
        self.crawler = crawler
        self.notify_url = notify_url
        self.checkpoints = checkpoints
        self.stop_readings = stop_readings

    async def run(
        self, actions: tuple[AbortAction, ...], reason: str, detail: dict[str, Any], document: dict[str, Any]
    ) -> dict[str, str]:
        steps = {
            AbortActionType.SAVE_STATE: lambda: self.save_state(reason),
            AbortActionType.LOG_EVENT: lambda: self.log_event(reason, detail),
            AbortActionType.NOTIFY: lambda: self.notify(reason, document),
            AbortActionType.CLEANUP: self.cleanup,
            AbortActionType.SHUTDOWN: lambda: self.shutdown(reason),
        }
        outcomes = await run_actions(actions, steps)
        if outcomes.get(AbortActionType.SHUTDOWN.value) == "timeout":
            outcomes[AbortActionType.SHUTDOWN.value] = "forced"
            timeout = next(a.timeout for a in actions if a.action_type is AbortActionType.SHUTDOWN)
            await halt.force_stop(self.crawler, reason, timeout)
        return outcomes

    async def save_state(self, reason: str) -> None:
        checkpoints = self.checkpoints()
        if checkpoints is not None:
            # Shielded: a checkpoint that outlasts the step's timeout is left to
            # finish (the next step runs), never cancelled halfway.
            await asyncio.shield(asyncio.ensure_future(checkpoints.save_checkpoint(reason)))

    async def log_event(self, reason: str, detail: dict[str, Any]) -> None:
        get_recorder(self.crawler).record(
            category=ABORT_CATEGORIES.get(reason, FailureCategory.SYSTEM),
            severity=FailureSeverity.CRITICAL,
            recovery_action=RecoveryAction.ABORT,
            source="monitor",
            message=f"Crawl stopped: {reason}",
            context=detail,
        )

    async def notify(self, reason: str, document: dict[str, Any]) -> None:
        self.crawler.signals.send_catch_log(
            signals.abort_triggered, reason=reason, document=document, spider=self.crawler.spider
        )
        if self.notify_url:
            status = await post_json(self.notify_url, document)
            logger.info("Abort notification sent to %s: HTTP %s", self.notify_url, status)

    async def cleanup(self) -> None:
        self.stop_readings()
        if not browsers.loaded():
            return
        # The bridge imports Playwright: imported only once scrapy-playwright is (start-up time).
        from scrapy_resilience.browser.bridge import close_contexts, playwright_handlers

        for handler in playwright_handlers(self.crawler):
            await close_contexts(handler)

    async def shutdown(self, reason: str) -> None:
        # Shielded: past the step's timeout the close is not cancelled halfway
        # but given up with the whole process (``run``).
        await asyncio.shield(asyncio.ensure_future(self.crawler.engine.close_spider_async(reason=reason)))
