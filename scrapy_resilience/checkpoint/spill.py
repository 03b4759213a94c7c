"""The scheduler's memory queues, keeping a big frontier as JSON text.

Each pending ``Request`` in Scrapy's memory queues is about a dozen objects
(1.7 KB) that Python's garbage collector walks on every full pass: at 200,000
pending requests those passes are a sixth of a callback's time. The ledger
encodes every scheduled request for its journal anyway, so beyond
``IN_MEMORY`` requests a queue keeps that JSON text instead (a few hundred
bytes, one untracked string) and decodes it when it is popped, as Scrapy's
disk queues do with pickle. A small frontier, the usual case, stays as objects
and costs nothing. A request that cannot be encoded stays an object.

Popped requests are new objects rebuilt from their text, as after a resume:
identity is lost, the ledger's id in ``meta`` is not.
"""

from __future__ import annotations

from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler

from scrapy_resilience.checkpoint import codec
from scrapy_resilience.checkpoint.ledger import Ledger, get_ledger

IN_MEMORY = 10_000  # requests a queue keeps as objects (about 17 MB); each one beyond costs a few hundred bytes


def spilling_queue(queue_class: type) -> type:
    """``queue_class`` (a Scrapy memory queue), keeping its requests beyond ``IN_MEMORY`` as text."""

    class SpillingQueue(queue_class):  # type: ignore[valid-type,misc]
        crawler: Crawler
        ledger: Ledger

        @classmethod
        def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Any:
            queue = super().from_crawler(crawler, *args, **kwargs)
            queue.crawler, queue.ledger = crawler, get_ledger(crawler)
            return queue

        def push(self, request: Request) -> None:
            if len(self) >= IN_MEMORY:
                text = self.ledger.request_json(request)
                if text is not None:
                    super().push(text)
                    return
            super().push(request)

        def pop(self) -> Request | None:
            return self._request(super().pop())

        def peek(self) -> Request | None:
            return self._request(super().peek())

        def _request(self, item: Any) -> Any:
            return codec.loads(item, self.crawler.spider) if type(item) is str else item

    SpillingQueue.__name__ = SpillingQueue.__qualname__ = f"Spilling{queue_class.__name__}"
    return SpillingQueue
