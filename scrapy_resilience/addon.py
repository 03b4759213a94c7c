"""The add-on: ``ADDONS = {"scrapy_resilience.Addon": 500}`` wires everything.

It only writes component dicts, with Scrapy's helpers, so a user's own
settings still win; it validates every ``RESILIENCE_*`` setting first, so a
bad value stops the crawl before any component (or request) exists.
"""

from __future__ import annotations

from scrapy.downloadermiddlewares.retry import RetryMiddleware as ScrapyRetryMiddleware
from scrapy.settings import BaseSettings

from scrapy_resilience import settings as resilience_settings
from scrapy_resilience.browser import detect as browsers
from scrapy_resilience.checkpoint.dupefilter import ResilientDupeFilter
from scrapy_resilience.checkpoint.extension import CheckpointExtension
from scrapy_resilience.checkpoint.frontier import LEDGER_ORDER, LedgerDownloaderMiddleware, LedgerSpiderMiddleware
from scrapy_resilience.checkpoint.scheduler import JournaledScheduler
from scrapy_resilience.checkpoint.sessions import SessionsExtension
from scrapy_resilience.monitor.extension import MonitorExtension
from scrapy_resilience.monitor.outcome import OUTCOME_ORDER, OutcomeMiddleware
from scrapy_resilience.retry.middleware import RetryMiddleware

# Where our retry middleware sits: the place of Scrapy's own (550), so that
# redirects, cookies and the rest of the stack see retries as they always did.
RETRY_ORDER = 550
SESSIONS_ORDER = -10


SCRAPY_REDIS_SCHEDULER = "scrapy_redis.scheduler.Scheduler"


def uses_scrapy_redis(settings: BaseSettings) -> bool:
    """Whether ``SCHEDULER`` is scrapy-redis's own (named by path or by class; not a subclass of it)."""
    value = settings.get("SCHEDULER")
    path = value if isinstance(value, str) else f"{value.__module__}.{value.__qualname__}"
    return path == SCRAPY_REDIS_SCHEDULER


class Addon:
    def update_settings(self, settings: BaseSettings) -> None:
        resilience_settings.validate_all(settings)
        if not resilience_settings.read(settings, "RESILIENCE_ENABLED"):
            return
        if resilience_settings.read(settings, "RESILIENCE_RETRY_ENABLED"):
            # Ours takes the place of Scrapy's: two retry layers would multiply attempts.
            settings.set_in_component_priority_dict("DOWNLOADER_MIDDLEWARES", ScrapyRetryMiddleware, None)
            settings.setdefault_in_component_priority_dict("DOWNLOADER_MIDDLEWARES", RetryMiddleware, RETRY_ORDER)
        settings.setdefault_in_component_priority_dict("EXTENSIONS", CheckpointExtension, 0)
        # Loaded before the checkpoint extension: it registers its state before the restore.
        settings.setdefault_in_component_priority_dict("EXTENSIONS", SessionsExtension, SESSIONS_ORDER)
        if resilience_settings.read(settings, "RESILIENCE_CHECKPOINT_DIR") is not None:
            # First in the chain: sees every request that leaves the scheduler.
            settings.setdefault_in_component_priority_dict("DOWNLOADER_MIDDLEWARES", LedgerDownloaderMiddleware,
                                                           LEDGER_ORDER)
            settings.setdefault_in_component_priority_dict("SPIDER_MIDDLEWARES", LedgerSpiderMiddleware, LEDGER_ORDER)
            # Only at add-on priority: a project's own DUPEFILTER_CLASS wins (its fingerprints are then not kept).
            settings.set("DUPEFILTER_CLASS", ResilientDupeFilter, priority="addon")
            # The same for the scheduler: with a project's own, the ledger listens to request_scheduled.
            settings.set("SCHEDULER", JournaledScheduler, priority="addon")
        if resilience_settings.read(settings, "RESILIENCE_MONITOR_ENABLED"):
            settings.setdefault_in_component_priority_dict("EXTENSIONS", MonitorExtension, 0)
            # Early in the chain: it sees every final outcome and refuses sends after an abort.
            settings.setdefault_in_component_priority_dict("DOWNLOADER_MIDDLEWARES", OutcomeMiddleware, OUTCOME_ORDER)
        # A scrapy-redis project gets the leased queue: crash-safe, and shared by its workers.
        if resilience_settings.read(settings, "RESILIENCE_REDIS_ENABLED") and uses_scrapy_redis(settings):
            # Imported only here: scrapy-redis and the redis client are an optional extra.
            from scrapy_resilience.redis.middleware import swap_scheduler

            swap_scheduler(settings)
        # Browser requests get DOWNLOAD_TIMEOUT ("no request waits forever"), crash
        # reports and session carry-over: scrapy-playwright's own handler has none of them.
        if browsers.configured(settings.getdict("DOWNLOAD_HANDLERS").values()):
            # Imported only here: the bridge imports Playwright (start-up time of crawls without browsers).
            from scrapy_resilience.browser.bridge import swap_download_handlers

            swap_download_handlers(settings)
