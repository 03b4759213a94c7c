"""Settings of the example project: a normal Scrapy project plus one line for the add-on."""

import os

BOT_NAME = "shop"
SPIDER_MODULES = ["shop.spiders"]
NEWSPIDER_MODULE = "shop.spiders"

# The one line a user adds: retries with backoff, checkpoints (once
# RESILIENCE_CHECKPOINT_DIR is set) and the monitor.
ADDONS = {"scrapy_resilience.Addon": 500}

# Where the demo site listens; the spiders also take `-a site=URL`.
DEMO_SITE_URL = os.environ.get("DEMO_SITE_URL", "http://127.0.0.1:8765")

# The demo site is ours and allows everything; skipping robots.txt keeps page counts exact.
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = 30
LOG_LEVEL = "INFO"

# `-s STATS_DUMP_FILE=stats.json` writes the final stats as JSON (demo.py reads them).
EXTENSIONS = {"shop.extensions.StatsDump": 500}

# Items go nowhere unless asked: `-O items.jsonl` or `-s FEEDS=...`.
FEEDS: dict[str, dict[str, object]] = {}

# scrapy-playwright needs the asyncio reactor (Scrapy's default since 2.13, written out for clarity).
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
# scrapy-playwright's DOWNLOAD_HANDLERS are set by the js_catalogue spider
# (custom_settings), so that the plain HTTP spiders do not start a Playwright driver.
PLAYWRIGHT_BROWSER_TYPE = "chromium"
# Debian's Chromium: `playwright install` cannot download in CI or air-gapped machines.
PLAYWRIGHT_LAUNCH_OPTIONS = {
    "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
    "headless": True,
    "args": [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ],
}
PLAYWRIGHT_MAX_PAGES_PER_CONTEXT = 4
PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT = 30_000  # milliseconds, as Playwright counts
