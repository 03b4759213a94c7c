"""The only module that touches scrapy-playwright's and Playwright's internals.

scrapy-playwright 0.0.48 has no API to recycle a browser, to report a crash
or to time a request out (it ignores ``DOWNLOAD_TIMEOUT``). Everything this
package needs of it is here, in small functions tested against the real
package (``tests/browser/test_browser.py``), so that a new scrapy-playwright release
breaks one file:

* ``ResilientPlaywrightDownloadHandler`` (swapped in for scrapy-playwright's
  handler by the add-on, see ``swap_download_handlers``) bounds every browser
  request by ``download_timeout``, counts the requests inside it and reports a
  browser that disconnects without being asked to as a crash (the internal
  ``signals.browser_crashed``), failing at once every request that was on it
  (``BrowserDisconnectedError``, retried on the relaunched browser).
* ``recycle`` closes a browser between two requests, with nothing lost, and
  lets scrapy-playwright launch a fresh one on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import psutil
from scrapy.crawler import Crawler
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.utils.misc import load_object
from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler
from twisted.internet.error import TimeoutError as DownloadTimeoutError

from scrapy_resilience import signals, stats
from scrapy_resilience.exceptions import BrowserDisconnectedError

logger = logging.getLogger(__name__)

_POLL = 0.1  # seconds between two looks at a draining browser
# Seconds a new browser request waits while scrapy-playwright drops a browser
# that disconnected (closing its contexts, forgetting it); then it goes on anyway.
DROP_WAIT = 5.0


class ResilientPlaywrightDownloadHandler(ScrapyPlaywrightDownloadHandler):
    """scrapy-playwright's handler with a download timeout, an in-flight count and crash reports."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.resilience_crawler = crawler
        self.default_timeout = crawler.settings.getfloat("DOWNLOAD_TIMEOUT")
        self._downloads: set[asyncio.Future[Response]] = set()  # browser requests inside the handler
        self._orphaned: set[asyncio.Future[Response]] = set()  # of them, failed by their browser's disconnection
        self._dropping: asyncio.Event | None = None  # set once a disconnected browser is forgotten
        self.recycling = False  # closing the browser on purpose: its disconnection is no crash
        # Context name -> {"kwargs": ..., "storage_state": ...}: what a context of
        # that name is created with next time (after a resume, a recycle, a crash).
        self.preloaded: dict[str, dict[str, Any]] = {}

    async def download_request(self, request: Request) -> Response:  # type: ignore[override]
        if not request.meta.get("playwright"):
            return await super().download_request(request)
        # Without this bound, a request that waits for a page slot of a context
        # whose browser died waits forever: the pages that would free the slot
        # now release the semaphore of the relaunched context.
        timeout = float(request.meta.get("download_timeout") or self.default_timeout)
        download = asyncio.ensure_future(self._download_on_a_live_browser(request))
        self._downloads.add(download)
        try:
            return await asyncio.wait_for(download, timeout=timeout)
        except asyncio.TimeoutError:
            raise DownloadTimeoutError(f"Getting {request.url} took longer than {timeout} seconds.") from None
        except asyncio.CancelledError:
            if download not in self._orphaned:
                raise  # cancelled from outside (the crawl is stopping)
            raise BrowserDisconnectedError(
                f"Browser closed under {request.url}: the browser disconnected (crashed or was killed) "
                "while the request was on it"
            ) from None
        finally:
            self._downloads.discard(download)
            self._orphaned.discard(download)

    @property
    def in_flight(self) -> int:
        """Browser requests inside the handler now."""
        return len(self._downloads)

    async def _download_on_a_live_browser(self, request: Request) -> Response:
        dropping = self._dropping
        if dropping is not None:
            # Until scrapy-playwright has forgotten the dead browser, a new page
            # would be asked of it, and might never come.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(dropping.wait(), DROP_WAIT)
        return await super().download_request(request)

    async def close(self) -> None:
        # The crawl is over: the browser's disconnection that follows is no crash.
        self.recycling = True
        await super().close()

    async def _create_browser_context(self, name: str, context_kwargs: dict | None, spider: Any = None) -> Any:
        saved = self.preloaded.get(name)
        if saved is not None:
            kwargs = {**saved.get("kwargs", {}), **(context_kwargs or {})}
            if "storage_state" not in (context_kwargs or {}) and saved.get("storage_state"):
                kwargs["storage_state"] = saved["storage_state"]
            context_kwargs = kwargs
        return await super()._create_browser_context(name=name, context_kwargs=context_kwargs, spider=spider)

    async def _browser_disconnected_callback(self) -> None:
        # scrapy-playwright's listener of the browser's "disconnected" event: it
        # closes the contexts and forgets the browser, so that the next request
        # launches a new one.
        if self.recycling:
            await super()._browser_disconnected_callback()
            return
        failed = self._fail_downloads()
        logger.warning(
            "The browser disconnected without being closed: counted as a crash; %d requests on it failed, "
            "to be retried on a new browser", failed,
        )  # fmt: skip
        crawler = self.resilience_crawler
        if failed:
            crawler.stats.inc_value(stats.BROWSER_REQUESTS_FAILED, failed)
        crawler.signals.send_catch_log(signals.browser_crashed, requests_failed=failed, spider=crawler.spider)
        self._dropping = dropping = asyncio.Event()
        try:
            await super()._browser_disconnected_callback()
        finally:
            dropping.set()
            if self._dropping is dropping:
                self._dropping = None

    def _fail_downloads(self) -> int:
        """Fail every browser request in the handler now; how many.

        Each is bound to the browser that disconnected (a new one is launched
        only once scrapy-playwright has forgotten it) and may wait for it
        forever: a new page or a navigation asked of a killed Chromium can
        stay unanswered, far longer than any ``DOWNLOAD_TIMEOUT`` a user wants
        to wait. ``download_request`` turns the cancellation into a
        ``BrowserDisconnectedError``, which the retry middleware retries.
        """
        doomed = [download for download in self._downloads if not download.done()]
        for download in doomed:
            self._orphaned.add(download)
            download.cancel()
        return len(doomed)


def swap_download_handlers(settings: BaseSettings) -> None:
    """Put our handler where a project uses scrapy-playwright's own, at the same priority."""
    handlers = settings["DOWNLOAD_HANDLERS"]
    if not isinstance(handlers, BaseSettings):
        return
    for scheme, path in list(handlers.items()):
        if path and load_object(path) is ScrapyPlaywrightDownloadHandler:
            handlers.set(scheme, ResilientPlaywrightDownloadHandler, priority=handlers.getpriority(scheme) or "addon")


def playwright_handlers(crawler: Crawler) -> list[ScrapyPlaywrightDownloadHandler]:
    """The crawl's scrapy-playwright download handlers (ours or the plain ones)."""
    found = crawler.engine.downloader.handlers._handlers.values()
    return [handler for handler in dict.fromkeys(found) if isinstance(handler, ScrapyPlaywrightDownloadHandler)]


def has_browser(handler: ScrapyPlaywrightDownloadHandler) -> bool:
    return getattr(handler, "browser", None) is not None


def open_pages(handler: ScrapyPlaywrightDownloadHandler) -> int:
    """Pages open in the handler's contexts (``playwright_include_page`` keeps them open after the download)."""
    return sum(len(wrapper.context.pages) for wrapper in list(handler.context_wrappers.values()))


def driver_pid(handler: ScrapyPlaywrightDownloadHandler) -> int | None:
    """PID of the Playwright driver process; the browser processes are its descendants.

    Playwright 1.65 keeps the pipe to the driver on ``_client._transport``;
    older releases (those scrapy-playwright's memusage extension was written
    for) on ``_connection._transport``.
    """
    manager = getattr(getattr(handler, "browser_provider", None), "playwright_context_manager", None)
    for owner in ("_client", "_connection"):
        process = getattr(getattr(getattr(manager, owner, None), "_transport", None), "_proc", None)
        if process is not None:
            return int(process.pid)
    return None


def browser_processes(handler: ScrapyPlaywrightDownloadHandler) -> list[psutil.Process]:
    """The browser's processes (the driver's descendants), for tests and measurements."""
    pid = driver_pid(handler)
    if pid is None:
        return []
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children(recursive=True)
    return []


async def close_contexts(handler: ScrapyPlaywrightDownloadHandler) -> None:
    """Close every browser context (the abort's CLEANUP): frees the browser's memory."""
    contexts = [wrapper.context for wrapper in list(handler.context_wrappers.values())]
    await asyncio.gather(*(context.close() for context in contexts), return_exceptions=True)


STORAGE_STATE_TIMEOUT = 10.0  # seconds for one context's cookies and local storage


async def _storage_states(handler: ScrapyPlaywrightDownloadHandler) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for name, wrapper in list(handler.context_wrappers.items()):
        if wrapper.persistent:
            continue  # a persistent context keeps its state in its user_data_dir
        try:
            state = await asyncio.wait_for(wrapper.context.storage_state(), STORAGE_STATE_TIMEOUT)
        except Exception as exc:  # a context closing or a browser gone: no state to keep
            logger.debug("No storage state for browser context %r: %r", name, exc)
            continue
        states[name] = {"storage_state": state}
        if isinstance(handler, ResilientPlaywrightDownloadHandler):
            handler.preloaded.setdefault(name, {})["storage_state"] = state
    return states


async def context_states(crawler: Crawler) -> dict[str, dict[str, Any]]:
    """``{name: {"storage_state": ...}}`` of every live non-persistent context, for checkpoints.

    Also kept on our handler, so that a context created again after a crash
    starts with the state of the last checkpoint.
    """
    states: dict[str, dict[str, Any]] = {}
    for handler in playwright_handlers(crawler):
        states.update(await _storage_states(handler))
    return states


def preload_contexts(crawler: Crawler, contexts: dict[str, dict[str, Any]]) -> int:
    """Have contexts of these names created with their saved kwargs and storage state; how many."""
    handlers = [h for h in playwright_handlers(crawler) if isinstance(h, ResilientPlaywrightDownloadHandler)]
    for handler in handlers:
        for name, saved in contexts.items():
            handler.preloaded[name] = dict(saved)
    return len(contexts) if handlers else 0


def _busy(handler: ScrapyPlaywrightDownloadHandler, crawler: Crawler) -> bool:
    queued = any(request.meta.get("playwright") for request in crawler.engine.downloader.active)
    return bool(getattr(handler, "in_flight", 0)) or queued or open_pages(handler) > 0


async def recycle(handler: ScrapyPlaywrightDownloadHandler, crawler: Crawler, drain_timeout: float) -> bool:
    """Close the handler's browser with no page lost; ``False`` when there was no browser.

    The engine is paused so that no new request picks the old browser, its
    requests (queued in the downloader too) finish, and only then is it
    closed; scrapy-playwright's disconnect callback drops the browser and its
    contexts and the next request launches a new one. After ``drain_timeout``
    the browser is closed anyway; the requests that were still on it fail
    and are retried like any other browser failure.
    """
    if not has_browser(handler):
        return False
    engine = crawler.engine
    engine.pause()
    try:
        deadline = time.monotonic() + drain_timeout
        while _busy(handler, crawler) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL)
        # The new browser's contexts start with the old ones' cookies and storage.
        await _storage_states(handler)
        browser = getattr(handler, "browser", None)
        if browser is None:
            return False  # it went away while draining: a crash (counted as such) or the crawl's end
        if isinstance(handler, ResilientPlaywrightDownloadHandler):
            handler.recycling = True  # from now on its disconnection is no crash
        await browser.close()
        # scrapy-playwright forgets the browser in an async "disconnected"
        # callback; wait for it, or do it when its restart is turned off.
        deadline = time.monotonic() + drain_timeout
        while getattr(handler, "browser", None) is browser and time.monotonic() < deadline:
            if not handler.config.restart_disconnected_browser:
                handler.context_wrappers.clear()
                del handler.browser
                break
            await asyncio.sleep(_POLL)
        return True
    finally:
        if isinstance(handler, ResilientPlaywrightDownloadHandler):
            handler.recycling = False
        engine.unpause()
