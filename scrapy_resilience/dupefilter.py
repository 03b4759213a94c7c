"""The old import path, kept working for ``settings.py`` files that name it (the module moved)."""

from scrapy_resilience.checkpoint.dupefilter import ResilientDupeFilter

__all__ = ["ResilientDupeFilter"]
