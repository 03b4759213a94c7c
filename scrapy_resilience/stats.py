"""Names of the stats this package writes, all under ``resilience/``.

Components import these names instead of spelling keys inline, so the docs
test can check every stat of docs/reference/stats.md against the code.
"""

from __future__ import annotations

PREFIX = "resilience"

RETRY_SCHEDULED = "resilience/retry/scheduled"
RETRY_DELAY_SECONDS = "resilience/retry/delay_seconds"
RETRY_PERMANENT = "resilience/retry/permanent"
RETRY_GAVE_UP = "resilience/retry/gave_up"
RETRY_HELD = "resilience/retry/held"  # requests waiting for their backoff right now
COOLDOWN_DOMAINS = "resilience/cooldown/domains"  # domains slowed down (paused or down) so far
HEALTH_PAUSES = "resilience/health/paused"  # Retry-After pauses of a domain
HEALTH_OPENED = "resilience/health/opened"  # times a domain was judged down (its circuit opened)
HEALTH_PROBES = "resilience/health/probes"  # requests sent as probes of a domain that was down
HEALTH_TAKEN_BACK = "resilience/health/taken_back"  # queued requests taken back, unsent, when their domain paused
HEALTH_WAITING = "resilience/health/waiting"  # requests waiting for their domain right now


def failures(category: str) -> str:
    """Key counting failures of one FailureCategory value (``network``...)."""
    return f"resilience/failures/{category}"


CHECKPOINT_COUNT = "resilience/checkpoint/count"
CHECKPOINT_LAST_SEQUENCE = "resilience/checkpoint/last_sequence"
CHECKPOINT_CORRUPTED = "resilience/checkpoint/corrupted"
CHECKPOINT_UNSERIALIZABLE = "resilience/checkpoint/unserializable"  # requests that could not be journaled
RESUME_COUNT = "resilience/resume/count"
RESUME_REQUESTS_RESTORED = "resilience/resume/requests_restored"
RESUME_CRASHES = "resilience/resume/crashes"  # runs of the job that died before this one
POISON_SET_ASIDE = "resilience/poison/set_aside"

BROWSER_RECYCLED = "resilience/browser/recycled"
BROWSER_CRASHES = "resilience/browser/crashes"
BROWSER_REQUESTS_FAILED = "resilience/browser/requests_failed"  # failed at once: their browser disconnected
MEMORY_MB_MAX = "resilience/resources/memory_mb_max"
CPU_PERCENT_MAX = "resilience/resources/cpu_percent_max"
ABORT_REASON = "resilience/abort/reason"
ABORT_BLOCKED = "resilience/abort/requests_blocked"  # requests refused after the abort
RESOURCES_READINGS = "resilience/resources/readings"


def threshold_tripped(setting: str) -> str:
    """Key counting how often one threshold (by setting name) tripped."""
    return f"resilience/threshold/{setting}"

REDIS_LEASED = "resilience/redis/leased"  # requests this worker took from the leased queue
REDIS_ACKED = "resilience/redis/acked"  # requests this worker finished and removed from Redis
REDIS_RECLAIMED = "resilience/redis/reclaimed"  # requests of dead workers put back by this one
REDIS_RECONNECTS = "resilience/redis/reconnects"  # connections to Redis lost and made again
REDIS_PAUSES_PUBLISHED = "resilience/redis/pauses_published"  # Retry-After pauses this worker wrote for the job
REDIS_PAUSES_FOLLOWED = "resilience/redis/pauses_followed"  # pauses written by other workers, applied here
