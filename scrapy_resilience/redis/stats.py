"""Stats keys of the leased queue (moved to ``scrapy_resilience.stats`` with the new layout)."""

LEASED = "resilience/redis/leased"  # requests taken from the queue by this worker
ACKED = "resilience/redis/acked"  # requests done and removed from Redis by this worker
RECLAIMED = "resilience/redis/reclaimed"  # requests of dead workers put back by this one
RECONNECTS = "resilience/redis/reconnects"  # connections to Redis lost and made again
