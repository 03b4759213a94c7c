"""The example project's spiders, run as a user runs them: `scrapy crawl` in example_project/."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# The spider tests run without the add-on, so they pin the spiders and the site alone;
# test_catalogue_with_the_addon runs the project as shipped.
NO_ADDON = {"ADDONS": {}}


def addon_components_import() -> bool:
    """Whether the add-on's components import (they land one by one, from other issues)."""
    try:
        for name in ("scrapy_resilience.retry", "scrapy_resilience.checkpoint", "scrapy_resilience.monitor"):
            importlib.import_module(name)
    except Exception:
        return False
    return True


def crawl(env: Any, spider: str, site: Any, out: Path, **settings: Any) -> list[dict[str, Any]]:
    """Run `scrapy crawl SPIDER -a site=URL` to its end with a JSON-lines feed; return the items."""
    settings = {"FEEDS": {str(out): {"format": "jsonlines"}}, **NO_ADDON, **settings}
    result = env.run("crawl", spider, "-a", f"site={site.url}", settings=settings)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'finish_reason': 'finished'" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_settings_enable_the_addon_in_one_line(scrapy_project_env: Any) -> None:
    """The project's settings.py enables the add-on through ADDONS, as a user would."""
    result = scrapy_project_env.run("settings", "--get", "ADDONS")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.replace("'", '"')) == {"scrapy_resilience.Addon": 500}


def test_catalogue_yields_one_item_per_live_product(
    scrapy_project_env: Any, start_demo_site: Any, tmp_path: Path
) -> None:
    """catalogue walks every list page and yields {sku, title, price, url} per live product, none for dead links."""
    site = start_demo_site("--products", "70", "--host", "127.0.0.1")
    info = site.info()
    items = crawl(scrapy_project_env, "catalogue", site, tmp_path / "items.jsonl")
    live = {str(k) for k in range(1, 71) if k not in info["dead"]}
    assert sorted(item["sku"] for item in items) == sorted(live)
    for item in items:
        assert item["url"] == f"{site.url}/product/{item['sku']}.html"
        assert item["title"].endswith(" " + item["sku"]) and isinstance(item["price"], float)
    assert {entry["path"] for entry in site.log() if entry["status"] == 404} == {
        f"/product/{k}-gone.html" for k in info["dead"]
    }


def test_catalogue_stops_early_on_the_session_site(scrapy_project_env: Any, demo_site: Any, tmp_path: Path) -> None:
    """With CLOSESPIDER_ITEMCOUNT the crawl of the big session site closes early with that many items or a few more."""
    feeds = {str(tmp_path / "items.jsonl"): {"format": "jsonlines"}}
    # No -a site=: the spider takes DEMO_SITE_URL from the environment the fixture sets.
    result = scrapy_project_env.run(
        "crawl", "catalogue", settings={"FEEDS": feeds, "CLOSESPIDER_ITEMCOUNT": 30, **NO_ADDON}
    )
    assert "'finish_reason': 'closespider_itemcount'" in result.stderr, result.stderr[-3000:]
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert len(items) >= 30 and all(item["url"].startswith(demo_site.url) for item in items)


def test_members_logs_in_and_sends_its_session(scrapy_project_env: Any, start_demo_site: Any, tmp_path: Path) -> None:
    """members logs in at /login, then every members page is fetched with the session cookie and yields items."""
    site = start_demo_site("--products", "20", "--members", "25", "--host", "127.0.0.1")
    items = crawl(scrapy_project_env, "members", site, tmp_path / "items.jsonl")
    assert sorted(item["sku"] for item in items) == sorted(f"M-{k}" for k in range(1, 26))
    member_requests = [entry for entry in site.log() if entry["path"].startswith("/members/")]
    assert member_requests and all(re.search(r"\bsession=\S+", entry["cookie"]) for entry in member_requests)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("addon", [False, True], ids=["plain", "addon"])
def test_js_catalogue_scrapes_links_rendered_by_javascript(
    scrapy_project_env: Any, start_demo_site: Any, tmp_path: Path, addon: bool
) -> None:
    """js_catalogue, on real Chromium, follows links that exist only after JavaScript ran and reads JS-filled pages."""
    if addon and not addon_components_import():
        pytest.skip("the add-on's retry/checkpoint/monitor components do not import yet")
    site = start_demo_site("--products", "45", "--host", "127.0.0.1")
    info = site.info()
    # With the add-on (and its browser handler in place of scrapy-playwright's), checkpoints on.
    shipped = {"ADDONS": {"scrapy_resilience.Addon": 500}, "RESILIENCE_CHECKPOINT_DIR": str(tmp_path / "job")}
    items = crawl(scrapy_project_env, "js_catalogue", site, tmp_path / "items.jsonl", **(shipped if addon else {}))
    assert sorted(int(item["sku"]) for item in items) == [k for k in range(1, 46) if k not in info["dead"]]
    for item in items:
        assert item["url"] == f"{site.url}/js/product/{item['sku']}.html"
        assert item["title"].endswith(" " + item["sku"]) and isinstance(item["price"], float)
    paths = {entry["path"] for entry in site.log()}
    assert {"/js/page-1.html", "/js/page-2.html", "/js/page-3.html"} <= paths


def test_catalogue_with_the_addon(scrapy_project_env: Any, start_demo_site: Any, tmp_path: Path) -> None:
    """The project as shipped (add-on on, checkpoints on) crawls a rate-limited site and loses nothing."""
    if not addon_components_import():
        pytest.skip("the add-on's retry/checkpoint/monitor components do not import yet")
    site = start_demo_site("--products", "60", "--host", "127.0.0.1")
    site.set_faults(rate_limit={"max_per_second": 20, "retry_after": 1})
    info = site.info()
    items = crawl(
        scrapy_project_env,
        "catalogue",
        site,
        tmp_path / "items.jsonl",
        ADDONS={"scrapy_resilience.Addon": 500},
        RESILIENCE_CHECKPOINT_DIR=str(tmp_path / "job"),
        RESILIENCE_RETRY_BASE_DELAY=0.1,
    )
    assert {item["sku"] for item in items} == {str(k) for k in range(1, 61) if k not in info["dead"]}


@pytest.mark.timeout(600)
def test_demo_loses_nothing_with_the_addon(tmp_path: Path) -> None:
    """`make demo`'s script, on a small shop: SIGKILLed once, no page lost with the add-on, pages lost without."""
    if not addon_components_import():
        pytest.skip("the add-on's retry/checkpoint/monitor components do not import yet")
    demo = Path(__file__).resolve().parent.parent / "example_project" / "demo.py"
    result = subprocess.run(
        [sys.executable, str(demo), "--products", "80", "--outage", "3", "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = re.findall(r"^(pages \w+) +(\d+) +(\d+)$", result.stdout, re.MULTILINE)
    table = {name: (int(with_addon), int(plain)) for name, with_addon, plain in rows}
    expected = table["pages expected"][0]
    assert table["pages obtained"] == (expected, expected - table["pages lost"][1])
    assert table["pages lost"][0] == 0
    assert re.search(r"^crashes survived +1 +\d+$", result.stdout, re.MULTILINE), "the add-on's crawl was not killed"
    assert "SIGKILL sent to the crawl" in result.stdout
    assert re.search(r"^  with scrapy-resilience +[\d.]+s +products +\d+/\d+", result.stdout, re.MULTILINE)


def test_docs_classic_way_wires_what_the_addon_wires(tmp_path: Path) -> None:
    """The docs' "classic way" settings block enables exactly the components the add-on enables."""
    from scrapy.settings import Settings
    from scrapy.utils.misc import load_object

    from scrapy_resilience import Addon

    quickstart = (Path(__file__).resolve().parent.parent / "docs" / "usage" / "quickstart.md").read_text("utf-8")
    block = re.search(r"```python\n(# settings.py: the same as ADDONS.*?)```", quickstart, re.DOTALL)
    assert block, "the classic-way block of docs/usage/quickstart.md is missing"
    classic: dict[str, Any] = {}
    exec(block.group(1), {}, classic)
    playwright = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
    base = {"RESILIENCE_CHECKPOINT_DIR": str(tmp_path), "DOWNLOAD_HANDLERS": {"http": playwright, "https": playwright}}
    with_addon = Settings(base)
    Addon().update_settings(with_addon)
    listed = Settings({**base, **classic})
    for name in ("DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "EXTENSIONS"):
        wired = [{load_object(k): v for k, v in s.getwithbase(name).items()} for s in (with_addon, listed)]
        assert wired[0] == wired[1], name
    handlers = [
        {k: v and load_object(v) for k, v in s.getwithbase("DOWNLOAD_HANDLERS").items()} for s in (with_addon, listed)
    ]
    assert handlers[0] == handlers[1]
    assert load_object(with_addon["DUPEFILTER_CLASS"]) is load_object(listed["DUPEFILTER_CLASS"])
