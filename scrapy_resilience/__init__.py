"""scrapy-resilience: crawls that survive crashes, outages, leaks and dead sites."""

from __future__ import annotations

from scrapy_resilience.addon import Addon

__all__ = ["Addon", "__version__"]

__version__ = "0.1.0"
