"""A real redis-server for the scrapy-redis tests: 127.0.0.1, a random port, its AOF in a temp dir."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_helpers import RedisServer, Workers


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with ``appendonly yes`` in ``tmp_path/redis``; killed after the test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def make_workers(
    scrapy_project_env: Any, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., Workers]]:
    """``make_workers(site, settings)``: workers of one job on ``site``; any still running are killed after the test."""
    made: list[Workers] = []

    def make(site: Any, settings: dict[str, Any] | None = None) -> Workers:
        scrapy_project_env.env["DEMO_SITE_URL"] = site.url
        made.append(Workers(scrapy_project_env, tmp_path, redis_server.url, settings))
        return made[-1]

    yield make
    for workers in made:
        workers.kill()
