"""Shared fixtures: the one local demo site, and running the example project's crawls.

``demo_site`` starts ``example_project/demosite.py`` once per test session; a
test that uses faults or the log calls ``demo_site.reset()`` first.
``scrapy_project_env`` runs ``scrapy`` commands inside ``example_project/``
as real subprocesses (the kill/resume tests need real processes to kill).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Hypothesis fails an example that takes over 200 ms by default: a wall-clock
# assertion in effect, which a loaded 2-core machine trips. Time is for benchmarks.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PROJECT = REPO / "example_project"

# Scrapy's CookiesMiddleware asks tldextract whether a cookie's domain is a public suffix.
# On first use tldextract downloads the public suffix list (caching it under $HOME), and
# offline it logs a traceback before falling back to its bundled copy. The suite crawls
# 127.0.0.1 only, so the bundled copy is all it needs: an empty URL list (tldextract >= 5.4)
# keeps every test, and every crawl a test starts (they inherit os.environ), off the network
# and independent of what the home directory holds. Set before Scrapy builds its extractor.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""


def _load_site_client() -> Any:
    # example_project/ is a Scrapy project, not a package: load its client module by path.
    spec = importlib.util.spec_from_file_location("demosite_client", EXAMPLE_PROJECT / "demosite_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


demosite_client = _load_site_client()
DemoSite = demosite_client.DemoSite


@pytest.fixture(scope="session")
def demo_site() -> Iterator[Any]:
    """The demo site on 127.0.0.1 and 127.0.0.2, one port, for the whole session."""
    site = DemoSite.start()
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture
def start_demo_site() -> Iterator[Any]:
    """Start extra, private demo sites (``start_demo_site("--products", "45")``); stopped after the test."""
    started: list[Any] = []

    def start(*args: str) -> Any:
        started.append(DemoSite.start(*args))
        return started[-1]

    yield start
    for site in started:
        site.stop()


class ScrapyProjectEnv:
    """How to run ``scrapy`` in example_project/ as a subprocess: cwd, env, argv."""

    def __init__(self, site_url: str) -> None:
        self.cwd = EXAMPLE_PROJECT
        self.env = dict(os.environ)
        # The repo root first, so the child imports this checkout of scrapy_resilience.
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env["PYTHONUNBUFFERED"] = "1"
        # example_project/shop/settings.py reads the site's URL from here.
        self.env["DEMO_SITE_URL"] = site_url

    def argv(self, *args: str, settings: dict[str, Any] | None = None) -> list[str]:
        """``python -m scrapy ARGS -s NAME=VALUE ...`` (dicts and lists as JSON, as Scrapy parses them)."""
        argv = [sys.executable, "-m", "scrapy", *args]
        for name, value in (settings or {}).items():
            text = json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)
            argv += ["-s", f"{name}={text}"]
        return argv

    def popen(self, *args: str, settings: dict[str, Any] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``scrapy ARGS`` (e.g. ``"crawl", "catalogue"``) without waiting; output goes to ``kwargs``."""
        return subprocess.Popen(self.argv(*args, settings=settings), cwd=self.cwd, env=self.env, text=True, **kwargs)

    def run(
        self, *args: str, settings: dict[str, Any] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``scrapy ARGS`` to the end (bounded by ``timeout``), capturing its output."""
        return subprocess.run(
            self.argv(*args, settings=settings),
            cwd=self.cwd,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def scrapy_project_env(demo_site: Any) -> ScrapyProjectEnv:
    """Runs ``scrapy`` commands in example_project/, pointed at the session's demo site."""
    return ScrapyProjectEnv(demo_site.url)
