"""StatsDump: the crawl's final stats as a JSON file, for scripts such as demo.py."""

from __future__ import annotations

import json
from pathlib import Path

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured


class StatsDump:
    """Writes every stat to ``STATS_DUMP_FILE`` once the engine has stopped (off when unset)."""

    def __init__(self, crawler: Crawler, path: str) -> None:
        self.crawler = crawler
        self.path = Path(path)
        # engine_stopped comes after spider_closed, when finish_reason and the final counts are in.
        crawler.signals.connect(self._engine_stopped, signal=signals.engine_stopped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StatsDump:
        path = crawler.settings.get("STATS_DUMP_FILE")
        if not path:
            raise NotConfigured
        return cls(crawler, path)

    def _engine_stopped(self) -> None:
        assert self.crawler.stats is not None
        self.path.write_text(json.dumps(self.crawler.stats.get_stats(), default=str, indent=1, sort_keys=True))
