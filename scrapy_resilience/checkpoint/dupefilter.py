"""A duplicate filter whose fingerprints survive a crash.

``ResilientDupeFilter`` is Scrapy's ``RFPDupeFilter`` (same fingerprints, same
logging) except for where fingerprints go: each new one is journaled by the
frontier ledger, in order with the request that produced it, so a checkpoint
stores them as deltas and a resume restores them. A request put back at resume
has its fingerprint seen already; it passes the filter exactly once. Scrapy's
own ``JOBDIR/requests.seen`` file is not used (it is flushed only at close).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.dupefilters import RFPDupeFilter

from scrapy_resilience.checkpoint.ledger import Ledger, get_ledger


class ResilientDupeFilter(RFPDupeFilter):
    """Installed by the add-on as ``DUPEFILTER_CLASS`` when checkpoints are on."""

    ledger: Ledger

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Any:
        dupefilter = cls(
            None, crawler.settings.getbool("DUPEFILTER_DEBUG"), fingerprinter=crawler.request_fingerprinter
        )
        dupefilter.ledger = get_ledger(crawler)
        dupefilter.ledger.deduplicates = True
        dupefilter.seen = set()
        return dupefilter

    seen: set[bytes]

    def request_seen(self, request: Request) -> bool:
        if self.ledger.passes_once(request):
            self.ledger.admitted(request, None)
            return False
        fp = self.fingerprinter.fingerprint(request)
        if fp in self.seen:
            return True
        self.seen.add(fp)
        self.ledger.admitted(request, fp)  # journals the request, then its fingerprint
        return False

    def restore(self, fingerprints: Iterable[bytes]) -> None:
        """Add the fingerprints of an earlier run (not journaled again: the checkpoint has them)."""
        if isinstance(fingerprints, set) and not self.seen:
            self.seen = fingerprints  # tens of millions: adopt the set rather than copy it
        else:
            self.seen.update(fingerprints)
