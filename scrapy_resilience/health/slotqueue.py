"""Taking requests back out of a download slot's queue, unsent: the one touch of the downloader's internals it needs.

Scrapy 2.19's ``Downloader.slots[key].queue`` holds ``(request, deferred)``
pairs appended by ``Downloader._enqueue_request``, which awaits the deferred
(``_process_queue`` pops a pair when it starts the transfer and fires the
deferred with the response). Popping the pair and erring its deferred back
makes the request leave as if the download had failed before the wire:
``_enqueue_request`` takes it out of ``slot.active``, ``Downloader.fetch`` out
of ``Downloader.active``, and the exception goes through every downloader
middleware's ``process_exception``. ``slot.transferring`` and ``slot.lastseen``
are untouched: nothing was sent; a pending delay timer finds an empty queue.

Used when a site pauses or goes down (its queued requests go back to wait with
the others: ``SiteDownError``) and at an abort (``monitor/halt``: ``RequestAfterAbort``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.python.failure import Failure


def fail_queued(slot: Any, exception: Callable[[], Exception]) -> int:
    """Fail every request waiting in download slot ``slot``'s queue with ``exception()``; how many."""
    failed = 0
    while slot.queue:
        _request, deferred = slot.queue.popleft()
        deferred.errback(Failure(exception()))
        failed += 1
    return failed
