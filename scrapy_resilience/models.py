"""The data model of scrapy-resilience (``shared/seed/data-model.md``).

Plain attrs classes: no Scrapy, no cattrs. Serialization lives in
``scrapy_resilience.serialization``; Scrapy objects are converted at the edge.
"""

from __future__ import annotations

import enum

# Numeric ranges of the data model's validation rules, shared with the settings
# module so that a setting and the entity it fills can never disagree.
MAX_ATTEMPTS_RANGE = (1, 100)
BASE_DELAY_RANGE = (0.1, 60.0)
MULTIPLIER_RANGE = (1.0, 10.0)
JITTER_RANGE = (0.0, 1.0)
PERCENT_RANGE = (1.0, 100.0)
BROWSER_LIFETIME_RANGE = (60, 86400)


class CheckpointStatus(enum.Enum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CORRUPTED = "corrupted"
    EXPIRED = "expired"


class FailureSeverity(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class FailureCategory(enum.Enum):
    NETWORK = "network"
    BROWSER = "browser"
    SYSTEM = "system"
    APPLICATION = "application"
    EXTERNAL = "external"


class RecoveryAction(enum.Enum):
    RETRY = "retry"
    RESTART = "restart"
    SKIP = "skip"
    ABORT = "abort"
    MANUAL = "manual"


class AbortActionType(enum.Enum):
    SHUTDOWN = "shutdown"
    NOTIFY = "notify"
    CLEANUP = "cleanup"
    SAVE_STATE = "save_state"
    LOG_EVENT = "log_event"
