"""scrapy-resilience: crawls that survive crashes, outages, leaks and dead sites."""

from __future__ import annotations

from typing import Any

__all__ = ["Addon", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy (start-up time): importing one part, the model or the inspection
    # command say, does not load every component of the crawl.
    if name == "Addon":
        from scrapy_resilience.addon import Addon

        return Addon
    raise AttributeError(f"module 'scrapy_resilience' has no attribute {name!r}")
