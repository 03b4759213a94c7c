"""Many workers on scrapy-redis: a leased, crash-safe request queue shared through Redis.

``scheduler.LeasedScheduler`` takes the place of scrapy-redis's scheduler
(the add-on swaps it in); ``keys`` names what lives in Redis and holds the Lua
scripts that change it atomically; ``link.RedisLink`` is the one thread that
talks to Redis, so the reactor never waits on a socket; ``shared`` shares the
abort decision between the workers of one job.
"""
