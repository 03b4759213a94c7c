"""The add-on swaps scrapy-redis's scheduler for the leased one, and only that one."""

from __future__ import annotations

import pytest
from scrapy.utils.misc import load_object
from scrapy.utils.test import get_crawler

from scrapy_resilience.exceptions import ConfigError
from scrapy_resilience.redis.middleware import LEASE_KEEPER_ORDER, LeaseKeeperMiddleware
from scrapy_resilience.redis.scheduler import LeasedScheduler

ADDON = {"scrapy_resilience.Addon": 500}
SCRAPY_REDIS = {"SCHEDULER": "scrapy_redis.scheduler.Scheduler", "REDIS_URL": "redis://127.0.0.1:1/0"}


def test_the_addon_swaps_scrapy_redis_scheduler_for_the_leased_one():
    """With scrapy-redis's scheduler the add-on puts the leased scheduler and its middleware in place."""
    settings = get_crawler(settings_dict={**SCRAPY_REDIS, "ADDONS": ADDON}).settings
    assert load_object(settings["SCHEDULER"]) is LeasedScheduler
    assert settings.getdict("DOWNLOADER_MIDDLEWARES")[LeaseKeeperMiddleware] == LEASE_KEEPER_ORDER


@pytest.mark.parametrize("settings", [
    {**SCRAPY_REDIS, "RESILIENCE_REDIS_ENABLED": False},
    {"REDIS_URL": "redis://127.0.0.1:1/0"},
])  # fmt: skip
def test_the_addon_leaves_other_schedulers_alone(settings):
    """RESILIENCE_REDIS_ENABLED=False, or another scheduler: SCHEDULER stays the user's."""
    crawler = get_crawler(settings_dict={**settings, "ADDONS": ADDON})
    assert crawler.settings["SCHEDULER"] == settings.get("SCHEDULER", "scrapy.core.scheduler.Scheduler")
    assert LeaseKeeperMiddleware not in crawler.settings.getdict("DOWNLOADER_MIDDLEWARES")


def test_an_unsupported_queue_class_stops_the_crawl_at_start_up():
    """A queue class the leased queue cannot read is refused, naming the setting and what is allowed."""
    crawler = get_crawler(settings_dict={**SCRAPY_REDIS, "SCHEDULER_QUEUE_CLASS": "collections.deque"})
    with pytest.raises(ConfigError, match=r"SCHEDULER_QUEUE_CLASS.*PriorityQueue, FifoQueue or LifoQueue"):
        LeasedScheduler.from_crawler(crawler)


def test_an_out_of_range_lease_timeout_stops_the_crawl_at_start_up():
    """RESILIENCE_REDIS_LEASE_TIMEOUT below 5 s is refused by the add-on before anything starts."""
    with pytest.raises(ConfigError, match=r"RESILIENCE_REDIS_LEASE_TIMEOUT=1.*5 to 3600"):
        get_crawler(settings_dict={**SCRAPY_REDIS, "ADDONS": ADDON, "RESILIENCE_REDIS_LEASE_TIMEOUT": 1})
