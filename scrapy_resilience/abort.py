"""The old import path, kept working for ``settings.py`` files that name it (the module moved)."""

from scrapy_resilience.exceptions import RequestAfterAbort
from scrapy_resilience.monitor.outcome import OUTCOME_ORDER, OutcomeMiddleware

__all__ = ["OUTCOME_ORDER", "OutcomeMiddleware", "RequestAfterAbort"]
