"""The leased queue's settings (moved to ``scrapy_resilience.settings`` with the new layout)."""

from typing import Any

from scrapy_resilience.exceptions import ConfigError


def lease_timeout(settings: Any) -> float:
    value = settings.get("RESILIENCE_REDIS_LEASE_TIMEOUT", 30)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError("RESILIENCE_REDIS_LEASE_TIMEOUT", value, "seconds from 5 to 3600") from None
    if not 5 <= seconds <= 3600:
        raise ConfigError("RESILIENCE_REDIS_LEASE_TIMEOUT", value, "seconds from 5 to 3600")
    return seconds
