"""Whether a crawl has scrapy-playwright in it, answered without importing Playwright.

Importing scrapy-playwright, and Playwright with it, costs about a tenth of a
second at every start; a crawl without browsers should not pay for it. The
components that deal with browsers import ``playwright_bridge`` only once
these say there is something to deal with.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def configured(handlers: Iterable[Any]) -> bool:
    """Whether ``DOWNLOAD_HANDLERS`` values name scrapy-playwright's handler (as a path or as the class)."""
    for handler in handlers:
        name = handler if isinstance(handler, str) else getattr(handler, "__module__", "")
        if name and name.startswith("scrapy_playwright"):
            return True
    return False


def loaded() -> bool:
    """Whether scrapy-playwright is imported: without it no handler of the crawl can hold a browser.

    Scrapy builds scrapy-playwright's download handler when the engine starts
    (it is not a lazy handler), so a crawl that uses it has imported it by then.
    """
    return "scrapy_playwright.handler" in sys.modules
