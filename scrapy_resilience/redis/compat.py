"""What the leased queue takes from scrapy-redis and Scrapy: settings, payloads, the queue's kind, waking the engine."""

from __future__ import annotations

import importlib
import os
import secrets
import socket
from typing import Any

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings
from scrapy.utils.misc import load_object
from scrapy.utils.request import request_from_dict
from scrapy_redis import defaults, picklecompat
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.queue import FifoQueue, LifoQueue, PriorityQueue

from scrapy_resilience.exceptions import ConfigError
from scrapy_resilience.meta import CRASHES_KEY, REDIS_HELD_KEY, REDIS_LEASE_KEY

# Our keys belong to one worker's copy of a request, never to its payload in Redis.
OWN_KEYS = (REDIS_LEASE_KEY, REDIS_HELD_KEY, CRASHES_KEY)

# scrapy-redis's Scheduler argument -> the setting it comes from, when set.
OPTIONAL = {
    "queue_key": "SCHEDULER_QUEUE_KEY",
    "queue_cls": "SCHEDULER_QUEUE_CLASS",
    "dupefilter_key": "SCHEDULER_DUPEFILTER_KEY",
    "dupefilter_cls": "DUPEFILTER_CLASS",
    "serializer": "SCHEDULER_SERIALIZER",
}


def scheduler_kwargs(settings: BaseSettings) -> dict[str, Any]:
    """scrapy-redis's ``Scheduler.from_settings`` arguments, read the same way (without its blocking ping)."""
    kwargs: dict[str, Any] = {
        "persist": settings.getbool("SCHEDULER_PERSIST"),
        "flush_on_start": settings.getbool("SCHEDULER_FLUSH_ON_START"),
    }
    for name, setting in OPTIONAL.items():
        if value := settings.get(setting):
            kwargs[name] = value
    if isinstance(kwargs.get("serializer"), str):
        kwargs["serializer"] = importlib.import_module(kwargs["serializer"])
    return kwargs


class Payloads:
    """Requests as scrapy-redis stores them (its serializer, pickle by default), and its fingerprints.

    The same payloads and fingerprints as plain scrapy-redis, so that a job
    begun with it goes on with the leased queue, and back.
    """

    def __init__(self, crawler: Crawler, spider: Spider, serializer: Any, dupefilter_cls: Any) -> None:
        self.crawler = crawler
        self.spider = spider
        self.serializer = serializer or picklecompat
        cls = load_object(dupefilter_cls or defaults.SCHEDULER_DUPEFILTER_CLASS)
        self.dupefilter = cls.from_spider(spider) if issubclass(cls, RFPDupeFilter) else None

    def fingerprint(self, request: Request) -> str:
        if self.dupefilter is not None:
            return str(self.dupefilter.request_fingerprint(request))
        return self.crawler.request_fingerprinter.fingerprint(request).hex()

    def encode(self, request: Request) -> bytes:
        document = request.to_dict(spider=self.spider)
        document["meta"] = {key: value for key, value in document["meta"].items() if key not in OWN_KEYS}
        return bytes(self.serializer.dumps(document))

    def decode(self, payload: bytes) -> Request:
        return request_from_dict(self.serializer.loads(payload), spider=self.spider)


def wake(crawler: Crawler) -> None:
    """Have the engine ask the scheduler for requests now, not at its next 5 s heartbeat.

    The one private access here: ``engine._slot.nextcall`` is how Scrapy itself
    wakes the engine when a request is scheduled; requests that arrive from
    Redis in a thread have no public way in.
    """
    slot = getattr(crawler.engine, "_slot", None)
    if slot is not None:
        slot.nextcall.schedule()


def worker_name() -> str:
    """A worker id: host and pid for people, a random part so that ids are never reused."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def queue_mode(queue_cls: Any) -> str:
    """``zset``, ``fifo`` or ``lifo``: how the leased queue reads scrapy-redis's queue class."""
    cls = load_object(queue_cls)
    for base, mode in ((PriorityQueue, "zset"), (FifoQueue, "fifo"), (LifoQueue, "lifo")):
        if isinstance(cls, type) and issubclass(cls, base):
            return mode
    raise ConfigError("SCHEDULER_QUEUE_CLASS", queue_cls, "with RESILIENCE_REDIS_ENABLED, scrapy-redis's "
                      "PriorityQueue, FifoQueue or LifoQueue (or a subclass)")
