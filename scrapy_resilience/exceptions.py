"""Exceptions raised by scrapy-resilience."""

from __future__ import annotations

from typing import Any

from scrapy.exceptions import IgnoreRequest


class ResilienceError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ResilienceError):
    """An invalid setting value: names the setting, the value and what is allowed."""

    def __init__(self, setting: str, value: Any, allowed: str) -> None:
        self.setting = setting
        self.value = value
        self.allowed = allowed
        super().__init__(f"{setting}={value!r} is invalid: {allowed}")


class SchemaVersionError(ResilienceError):
    """A checkpoint document of a schema version this package cannot read."""


class CheckpointCorruptedError(ResilienceError):
    """A checkpoint failed its checksum, did not parse, or lost a sidecar."""


class IllegalTransition(ResilienceError):
    """A lifecycle transition that the data model's state machine does not allow."""


class UnserializableRequestError(ResilienceError):
    """A request holds a value in meta or cb_kwargs that cannot be checkpointed."""


class BrowserDisconnectedError(ResilienceError):
    """A browser request failed because its browser disconnected (crashed, killed) while it was on it.

    Raised at the disconnection, whatever ``DOWNLOAD_TIMEOUT`` is: the request
    could never complete. It is transient (category ``browser``): the retry
    middleware sends the request again, to the browser scrapy-playwright
    launches next. It says nothing about the site.
    """


class SiteDownError(ResilienceError):
    """A request taken back, unsent, from its download slot's queue because its site paused or went down.

    The retry middleware parks it to wait for the site, its attempts unspent;
    it is neither a failure of the site nor an attempt.
    """


class JobLockedError(ResilienceError):
    """The job directory is in use by another crawl (it holds ``DIR/lock``)."""


class RequestAfterAbort(IgnoreRequest):
    """A request refused because the crawl is being stopped: it was never sent, it is not done."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(f"Not sent: the crawl is stopping ({reason})")
