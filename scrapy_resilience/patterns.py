"""The old import path, kept working for ``settings.py`` files that name it (the module moved)."""

from scrapy_resilience.model.patterns import PERMANENT_PATTERNS, TRANSIENT_PATTERNS

__all__ = ["PERMANENT_PATTERNS", "TRANSIENT_PATTERNS"]
