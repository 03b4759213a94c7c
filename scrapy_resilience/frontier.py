"""The old import path, kept working for ``settings.py`` files that name it (the module moved)."""

from scrapy_resilience.checkpoint.frontier import LEDGER_ORDER, LedgerDownloaderMiddleware, LedgerSpiderMiddleware

__all__ = ["LEDGER_ORDER", "LedgerDownloaderMiddleware", "LedgerSpiderMiddleware"]
