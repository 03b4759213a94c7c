"""The two ends of an abort that Scrapy has no public API for.

* ``fail_queued_requests``: at the decision, requests that already passed
  every downloader middleware (so ``OutcomeMiddleware`` can no longer refuse
  them) may wait in a download slot's queue for a free transfer slot or the
  slot's delay, or have just left it for a transfer that has not started;
  they must not be sent either (the second touch of the downloader's
  internals: its ``handlers.download_request_async`` is replaced).
* ``force_stop``: when the graceful close has not finished within
  ``RESILIENCE_ABORT_SHUTDOWN_TIMEOUT`` (a callback that never returns keeps
  the engine's slot open forever), the process is stopped as Scrapy stops it
  at a second Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from scrapy.utils.defer import deferred_from_coro

from scrapy_resilience.health.slotqueue import fail_queued

logger = logging.getLogger(__name__)


def fail_queued_requests(downloader: Any, exception: Callable[[], Exception], refused: Callable[[int], None]) -> None:
    """Fail every request waiting in a download slot's queue with ``exception()``, and any sent from now on.

    ``refused(n)`` is told how many: those of the queues at once, then each
    one refused on its way to a download handler. The queues are emptied by
    ``health/slotqueue.fail_queued``, which says how; the frontier keeps a
    ``RequestAfterAbort`` pending.
    """
    refused(sum(fail_queued(slot, exception) for slot in downloader.slots.values()))

    # A request popped from a slot's queue reaches its download handler only on
    # the next turn of the event loop (``_process_queue`` schedules
    # ``_wait_for_download`` as a task), so one popped just before the decision
    # is in no queue now: it is refused where it would reach the handler, and
    # fails (and is counted) the same way.
    async def refuse(request: Any) -> Any:
        refused(1)
        raise exception()

    downloader.handlers.download_request_async = refuse


async def force_stop(crawler: Any, reason: str, timeout: float) -> None:
    """Stop the process's reactor as Scrapy's second Ctrl-C does, recording what can still be recorded.

    The close that hangs never reaches ``spider_closed``, so the close reason
    is set as ``finish_reason`` here and the stats are dumped (and persisted by
    the stats collector) as at a normal close; the final checkpoint was saved
    by SAVE_STATE before.
    """
    # Imported here: importing the reactor at module level would install one.
    from twisted.internet import reactor

    logger.error("The graceful close (%s) did not finish within %ss: forcing the stop of the process", reason, timeout)
    crawler.stats.set_value("finish_reason", reason)
    try:
        crawler.stats.close_spider(reason=reason)
    except Exception:  # a stats collector's failure must not keep the process alive
        logger.exception("Stats close failure")
    # Scrapy's first Ctrl-C: Crawler.stop_async() marks the crawler stopped at
    # once (then joins the close that hangs), so the "before shutdown" trigger
    # of CrawlerProcess, which stops every crawler still crawling, does not
    # wait for it; Scrapy's second Ctrl-C then stops the reactor (_signal_kill).
    deferred_from_coro(crawler.stop_async())
    await asyncio.sleep(0)  # that first step runs before the reactor's shutdown
    with contextlib.suppress(RuntimeError):  # already stopped or stopping
        reactor.stop()  # type: ignore[misc]  # twisted.internet.reactor is typed as a module
