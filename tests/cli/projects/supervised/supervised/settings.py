"""Settings of the supervisor tests' project: the add-on, and quick checkpoints."""

BOT_NAME = "supervised"
SPIDER_MODULES = ["supervised.spiders"]
ADDONS = {"scrapy_resilience.Addon": 500}
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"
# Checkpoints every second, so that a test can kill the crawl after one.
RESILIENCE_CHECKPOINT_INTERVAL = 1
RESILIENCE_MONITOR_INTERVAL = 0.2
RESILIENCE_RETRY_BASE_DELAY = 0.1
RESILIENCE_RETRY_MAX_DELAY = 0.2
CONCURRENT_REQUESTS = 4
