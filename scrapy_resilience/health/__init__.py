"""The health of each site (download slot): one circuit per slot, fed by every attempt, read by retry and the monitor.

``site_health(crawler)`` is the crawl's one ``SiteHealth``.
"""

from scrapy_resilience.health.board import SiteHealth, is_failure, site_health

__all__ = ["SiteHealth", "is_failure", "site_health"]
