"""The old import path, kept working for ``settings.py`` files that name it (the module moved)."""

# Importing it imports Playwright, as naming scrapy-playwright's own handler does.
from scrapy_resilience.browser.bridge import ResilientPlaywrightDownloadHandler

__all__ = ["ResilientPlaywrightDownloadHandler"]
