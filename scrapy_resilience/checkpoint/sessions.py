"""Sessions survive a crash: cookie jars and browser storage in checkpoints.

A crawl that logged in, or earned a session a site trusts, keeps it across a
resume: the checkpoint extension stores what ``_save`` returns in
``data.browser_state["sessions"]`` and hands it back to ``_restore`` before
the first request of the resumed run.

* HTTP: the jars of Scrapy's CookiesMiddleware, one per ``cookiejar`` meta
  key (its public ``jars`` attribute), cookie by cookie.
* Browser: each scrapy-playwright context's creation kwargs (those that JSON
  can hold) and its Playwright ``storage_state()`` (cookies and local
  storage); on resume a context is created again with that state the first
  time a request uses it (``playwright_bridge``).

``RESILIENCE_CHECKPOINT_SESSIONS = False`` keeps all of it out of checkpoints.
Cookies are credentials: checkpoint files are owner-only and
``scrapy resilience show`` masks their values.
"""

from __future__ import annotations

import json
import logging
from http.cookiejar import Cookie
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.cookies import CookiesMiddleware
from scrapy.exceptions import NotConfigured
from scrapy.http.cookies import CookieJar

from scrapy_resilience.browser import detect as browsers
from scrapy_resilience.checkpoint.extension import CheckpointExtension
from scrapy_resilience.settings import CheckpointConfig

logger = logging.getLogger(__name__)

STATE_NAME = "sessions"

# The attributes that make an http.cookiejar.Cookie, in its constructor's order.
_COOKIE_FIELDS = (
    "version", "name", "value", "port", "port_specified", "domain", "domain_specified", "domain_initial_dot",
    "path", "path_specified", "secure", "expires", "discard", "comment", "comment_url",
)


def cookie_to_json(cookie: Cookie) -> dict[str, Any]:
    data = {field: getattr(cookie, field) for field in _COOKIE_FIELDS}
    data["rest"] = dict(cookie._rest)  # type: ignore[attr-defined]  # HttpOnly & co.: no public getter
    data["rfc2109"] = cookie.rfc2109
    return data


def cookie_from_json(data: dict[str, Any]) -> Cookie:
    return Cookie(**{field: data[field] for field in _COOKIE_FIELDS}, rest=data["rest"], rfc2109=data["rfc2109"])


def jars_to_json(jars: dict[Any, CookieJar]) -> list[dict[str, Any]]:
    """Every jar whose key JSON can hold, as ``{"key": ..., "cookies": [...]}``."""
    saved = []
    for key, jar in jars.items():
        try:
            json.dumps(key)
        except TypeError:
            logger.warning("Cookie jar %r is not checkpointed: its cookiejar key is not JSON", key)
            continue
        saved.append({"key": key, "cookies": [cookie_to_json(cookie) for cookie in jar]})
    return saved


def jars_from_json(saved: list[dict[str, Any]], jars: dict[Any, CookieJar]) -> int:
    """Put the saved cookies back into ``jars``; returns how many."""
    count = 0
    for entry in saved:
        jar = jars[entry["key"]]
        for data in entry["cookies"]:
            jar.set_cookie(cookie_from_json(data))
            count += 1
    return count


class SessionsExtension:
    """Registers the sessions with the checkpoint extension; see the module docstring."""

    def __init__(self, crawler: Crawler) -> None:
        config = CheckpointConfig.from_settings(crawler.settings)
        if not (config.enabled and config.sessions):
            raise NotConfigured("checkpoints or RESILIENCE_CHECKPOINT_SESSIONS are off")
        self.crawler = crawler
        self.context_kwargs: dict[str, dict[str, Any]] = {}
        # Connected before the checkpoint extension's own handler (this
        # extension is loaded first), so the state is registered before it restores.
        crawler.signals.connect(self._spider_opened, signal=signals.spider_opened)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SessionsExtension:
        return cls(crawler)

    def _spider_opened(self, spider: Any) -> None:
        checkpoint = self.crawler.get_extension(CheckpointExtension)
        if checkpoint is not None:
            checkpoint.register_state(STATE_NAME, self._save, self._restore)
        if browsers.loaded():  # the engine has built its download handlers by now
            # Only crawls with browsers pay for a handler on every request (a few µs each).
            self.crawler.signals.connect(self._request_reached_downloader, signal=signals.request_reached_downloader)

    def _request_reached_downloader(self, request: Request, spider: Any) -> None:
        # scrapy-playwright keeps no record of how a context was made: note it
        # from the first request that names it, so a resume can make it again.
        if request.meta.get("playwright"):
            name = request.meta.get("playwright_context", "default")
            if name not in self.context_kwargs:
                kwargs = request.meta.get("playwright_context_kwargs") or {}
                self.context_kwargs[name] = _json_only(kwargs)

    def _cookies(self) -> CookiesMiddleware | None:
        return self.crawler.get_downloader_middleware(CookiesMiddleware)

    async def _save(self) -> dict[str, Any]:
        middleware = self._cookies()
        contexts = await _context_states(self.crawler)
        for name, state in contexts.items():
            state["kwargs"] = self.context_kwargs.get(name, state.get("kwargs", {}))
        return {"cookiejars": jars_to_json(middleware.jars) if middleware else [], "contexts": contexts}

    def _restore(self, saved: dict[str, Any]) -> None:
        middleware = self._cookies()
        cookies = jars_from_json(saved.get("cookiejars", []), middleware.jars) if middleware else 0
        contexts = saved.get("contexts", {})
        for name, state in contexts.items():
            self.context_kwargs.setdefault(name, state.get("kwargs", {}))
        restored = _preload_contexts(self.crawler, contexts)
        logger.info("Sessions restored: %d cookies, %d browser contexts %s", cookies, restored, sorted(contexts))


async def _context_states(crawler: Crawler) -> dict[str, dict[str, Any]]:
    if not browsers.loaded():
        return {}
    from scrapy_resilience.browser.bridge import context_states  # imports Playwright: only when it is loaded

    return await context_states(crawler)


def _preload_contexts(crawler: Crawler, contexts: dict[str, dict[str, Any]]) -> int:
    if not browsers.loaded():
        return 0
    from scrapy_resilience.browser.bridge import preload_contexts  # imports Playwright: only when it is loaded

    return preload_contexts(crawler, contexts)


def _json_only(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs JSON can hold; the others (callables, say) cannot be made again after a crash."""
    kept = {}
    for key, value in kwargs.items():
        try:
            json.dumps(value)
        except TypeError:
            logger.warning("Browser context kwarg %r is not checkpointed: it is not JSON", key)
            continue
        kept[key] = value
    return kept
