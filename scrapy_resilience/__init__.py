"""scrapy-resilience: crawls that survive crashes, outages, leaks and dead sites."""

from __future__ import annotations

from typing import Any

__all__ = ["Addon", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so that the store, the event log and the inspection command can be
    # used (and imported quickly) without loading Scrapy.
    if name == "Addon":
        from scrapy_resilience.addon import Addon

        return Addon
    raise AttributeError(f"module 'scrapy_resilience' has no attribute {name!r}")
