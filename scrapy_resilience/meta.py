"""The request meta keys the add-on reads and writes (``request.meta[...]``).

Users set ``POLICY_KEY`` and ``RETRY_UNSAFE_KEY``; the others are written by
the add-on and carried by a request through retries, redirects and the
journal. Scrapy's own ``dont_retry`` and ``max_retry_times`` keep their meaning.
"""

from __future__ import annotations

POLICY_KEY = "resilience_policy"  # the name of a RESILIENCE_RETRY_POLICIES policy
RETRY_UNSAFE_KEY = "resilience_retry_unsafe"  # True: a non-idempotent method may be retried
CORRELATION_ID_KEY = "resilience_correlation_id"  # shared by the FailureEvents of one request's attempts
# When this request first failed (epoch): once the site has answered a request
# sent after that, the request's failures are its own, not the site's.
FAILED_SINCE_KEY = "resilience_failed_since"

ID_KEY = "resilience_id"  # the request's id in the frontier ledger
CRASHES_KEY = "resilience_crashes"  # consecutive deaths of the job with this request in flight
START_KEY = "resilience_start"  # a request of the spider's start(), to skip once handled
# Put back at resume, passes the dupefilter once; True when its journal line is
# unchanged, "changed" when it must be journaled again (crash count).
RESTORED_KEY = "_resilience_restored"

# The ledger's keys: a child request built with meta=response.meta must not inherit them.
LEDGER_KEYS = (ID_KEY, CRASHES_KEY, START_KEY, RESTORED_KEY)

# The leased queue on scrapy-redis: a worker's own marks, never pushed to Redis with the request.
REDIS_LEASE_KEY = "resilience_redis_lease"  # the lease id of a request taken from Redis
REDIS_HELD_KEY = "resilience_redis_held"  # the id of a held retry's entry in Redis
