"""The add-on: its exact settings diff, the off switches, and bad settings at start-up."""

from __future__ import annotations

import subprocess
import sys

from scrapy.downloadermiddlewares.retry import RetryMiddleware as ScrapyRetryMiddleware
from scrapy.utils.misc import load_object
from scrapy.utils.test import get_crawler

from scrapy_resilience.checkpoint.extension import CheckpointExtension
from scrapy_resilience.checkpoint.sessions import SessionsExtension
from scrapy_resilience.monitor.extension import MonitorExtension
from scrapy_resilience.monitor.outcome import OutcomeMiddleware
from scrapy_resilience.retry.middleware import RetryMiddleware

ADDON = {"scrapy_resilience.Addon": 500}


def _diff(settings: dict) -> dict:
    """The component settings the add-on changes, compared with the same crawler without it."""
    plain = get_crawler(settings_dict=settings)
    with_addon = get_crawler(settings_dict={**settings, "ADDONS": ADDON})
    diff = {}
    for name in ("DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "EXTENSIONS", "DUPEFILTER_CLASS", "SCHEDULER",
                 "ITEM_PIPELINES"):
        before, after = _loaded(plain.settings[name]), _loaded(with_addon.settings[name])
        if before != after:
            diff[name] = after
    return diff


def _loaded(value):
    """A component dict keyed by classes, whether the settings named them by class or by import path."""
    if not hasattr(value, "items"):
        return value
    return {load_object(key): order for key, order in value.items()}


def test_addon_settings_diff():
    """Without checkpoints the add-on swaps the retry middleware and enables the two extensions, nothing else."""
    assert _diff({}) == {
        "DOWNLOADER_MIDDLEWARES": {ScrapyRetryMiddleware: None, RetryMiddleware: 550, OutcomeMiddleware: 50},
        "EXTENSIONS": {CheckpointExtension: 0, SessionsExtension: -10, MonitorExtension: 0},
    }


def test_user_settings_win():
    """A user's own order for our middleware is kept."""
    diff = _diff({"DOWNLOADER_MIDDLEWARES": {"scrapy_resilience.retry.RetryMiddleware": 600}})
    assert diff["DOWNLOADER_MIDDLEWARES"][RetryMiddleware] == 600


def test_disabled_suite_changes_nothing():
    """RESILIENCE_ENABLED=False leaves every component setting as Scrapy's."""
    assert _diff({"RESILIENCE_ENABLED": False}) == {}


def test_retry_switch_keeps_scrapys_retry():
    """RESILIENCE_RETRY_ENABLED=False keeps Scrapy's RetryMiddleware in place and leaves ours out."""
    middlewares = _diff({"RESILIENCE_RETRY_ENABLED": False})["DOWNLOADER_MIDDLEWARES"]
    assert ScrapyRetryMiddleware not in middlewares and RetryMiddleware not in middlewares


def test_monitor_switch():
    """RESILIENCE_MONITOR_ENABLED=False leaves the monitor and its outcome middleware out."""
    diff = _diff({"RESILIENCE_MONITOR_ENABLED": False})
    assert MonitorExtension not in diff["EXTENSIONS"] and OutcomeMiddleware not in diff["DOWNLOADER_MIDDLEWARES"]


def test_checkpoint_components_only_with_a_directory(tmp_path):
    """With RESILIENCE_CHECKPOINT_DIR the add-on also installs the ledger middlewares, dupefilter and scheduler."""
    from scrapy_resilience.checkpoint.dupefilter import ResilientDupeFilter
    from scrapy_resilience.checkpoint.frontier import LedgerDownloaderMiddleware, LedgerSpiderMiddleware
    from scrapy_resilience.checkpoint.scheduler import JournaledScheduler

    diff = _diff({"RESILIENCE_CHECKPOINT_DIR": str(tmp_path)})
    assert LedgerDownloaderMiddleware in diff["DOWNLOADER_MIDDLEWARES"]
    assert LedgerSpiderMiddleware in diff["SPIDER_MIDDLEWARES"]
    assert load_object(diff["DUPEFILTER_CLASS"]) is ResilientDupeFilter
    assert load_object(diff["SCHEDULER"]) is JournaledScheduler
    own = _diff({"RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "own"), "SCHEDULER": "scrapy.core.scheduler.Scheduler"})
    assert "SCHEDULER" not in own  # a project's own choice, even of Scrapy's class, is kept
    assert "SPIDER_MIDDLEWARES" not in _diff({})


def test_bad_setting_stops_scrapy_crawl_with_a_clear_last_line(tmp_path):
    """An invalid setting exits non-zero before any request, the last line naming setting, value and rule."""
    spider = tmp_path / "spider.py"
    spider.write_text(
        "import scrapy\n"
        "class S(scrapy.Spider):\n"
        "    name = 's'\n"
        "    start_urls = ['http://127.0.0.1:9/']\n"
        "    def parse(self, response):\n"
        "        pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "runspider", str(spider), "-s", 'ADDONS={"scrapy_resilience.Addon": 500}',
         "-s", "RESILIENCE_RETRY_MAX_ATTEMPTS=0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode != 0
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "RESILIENCE_RETRY_MAX_ATTEMPTS" in last and "'0'" in last and "1 to 100" in last
    assert "Crawled" not in result.stderr


def test_crawler_process_script_with_the_addon(tmp_path):
    """A plain CrawlerProcess script with ADDONS runs: enabling the add-on installs no reactor too early."""
    script = tmp_path / "run.py"
    script.write_text(
        "import scrapy\n"
        "from scrapy.crawler import CrawlerProcess\n"
        "class S(scrapy.Spider):\n"
        "    name = 's'\n"
        "    start_urls = ['http://127.0.0.1:9/']\n"
        "    def parse(self, response):\n"
        "        pass\n"
        "process = CrawlerProcess(settings={'ADDONS': {'scrapy_resilience.Addon': 500},\n"
        "                                   'RESILIENCE_RETRY_MAX_ATTEMPTS': 1})\n"
        "process.crawl(S)\n"
        "process.start()\n"
        "print('FINISHED')\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "FINISHED" in result.stdout and "Spider closed (finished)" in result.stderr


def test_playwright_is_imported_only_by_crawls_that_use_it():
    """A plain HTTP crawl with the add-on never imports Playwright; one with its handler gets ours."""
    script = (
        "import sys\n"
        "from scrapy.utils.test import get_crawler\n"
        "settings = {'ADDONS': {'scrapy_resilience.Addon': 500}}\n"
        "get_crawler(settings_dict=settings)\n"
        "print('scrapy_playwright.handler' in sys.modules)\n"
        "handler = 'scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler'\n"
        "crawler = get_crawler(settings_dict={**settings, 'DOWNLOAD_HANDLERS': {'https': handler}})\n"
        "print(crawler.settings.getdict('DOWNLOAD_HANDLERS')['https'].__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "ResilientPlaywrightDownloadHandler"]
