"""The downloader middleware that feeds the monitor final outcomes and refuses sends after an abort."""

from __future__ import annotations

from typing import Any

from scrapy.http import Response

from scrapy_resilience.exceptions import RequestAfterAbort
from scrapy_resilience.monitor.extension import MonitorExtension

# First in process_request (nothing is sent after an abort) and last in
# process_response/process_exception, after the retry middleware (550): what
# reaches it is a final outcome.
OUTCOME_ORDER = 50


class OutcomeMiddleware:
    """Feeds final download outcomes to the monitor's abort policy; refuses sends after an abort."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self._looked_up = False
        self._found: MonitorExtension | None = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> OutcomeMiddleware:
        return cls(crawler)

    def _monitor(self) -> MonitorExtension | None:
        # Looked up once the engine exists (extensions are built after middlewares).
        if not self._looked_up:
            self._found = self.crawler.get_extension(MonitorExtension)
            self._looked_up = True
        return self._found

    def process_request(self, request: Any) -> None:
        monitor = self._monitor()
        if monitor is not None and not monitor.may_send():
            raise RequestAfterAbort(monitor.stopping or "")

    def process_response(self, request: Any, response: Response) -> Response:
        monitor = self._monitor()
        if monitor is not None:
            monitor.outcome(request, response)
        return response

    def process_exception(self, request: Any, exception: Exception) -> None:
        monitor = self._monitor()
        if monitor is not None:
            monitor.outcome(request, exception)
