"""Sessions survive a crash: cookie jars and browser storage are checkpointed and restored."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scrapy import Request
from scrapy.http import HtmlResponse
from scrapy.http.cookies import CookieJar

from scrapy_resilience.checkpoint.sessions import jars_from_json, jars_to_json

DEADLINE = 120  # seconds any one wait may take before the test fails


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _items(feed: Path) -> list[dict[str, Any]]:
    if not feed.exists():
        return []
    lines = feed.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def _newest_sequence(job: Path) -> int:
    names = [p.name for p in (job / "checkpoints").glob("checkpoint-*.json*")] if (job / "checkpoints").exists() else []
    return max((int(name.split("-")[1].split(".")[0]) for name in names), default=0)


def _settings(job: Path, feed: Path, **extra: Any) -> dict[str, Any]:
    return {
        "RESILIENCE_CHECKPOINT_DIR": str(job),
        "RESILIENCE_CHECKPOINT_INTERVAL": 1,
        "FEEDS": {feed.as_uri(): {"format": "jsonlines"}},
        "LOG_LEVEL": "INFO",
        **extra,
    }


def _kill_after_a_checkpoint_with_items(env: Any, spider: str, settings: dict[str, Any], feed: Path, job: Path,
                                        log: Path, items: int) -> float:
    """Start the crawl, wait for ``items`` items and a checkpoint taken after them, SIGKILL it; the kill time."""
    with log.open("w") as output:
        process = env.popen("crawl", spider, settings=settings, stdout=output, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait(lambda: len(_items(feed)) >= items or process.poll() is not None, f"{items} items")
        assert process.poll() is None, "the crawl ended before the kill:\n" + log.read_text()
        seen = _newest_sequence(job)
        _wait(lambda: _newest_sequence(job) > seen or process.poll() is not None, "a checkpoint after the items")
        assert process.poll() is None, "the crawl ended before the kill:\n" + log.read_text()
        killed_at = time.time()
        os.killpg(process.pid, signal.SIGKILL)  # the browser's processes too
    finally:
        process.wait(timeout=30)
    return killed_at


def test_cookie_jars_round_trip():
    """Cookies of every jar, attributes included, come back from their JSON form."""
    jars: dict[Any, CookieJar] = {None: CookieJar(), 2: CookieJar()}
    request = Request("http://127.0.0.1/login")
    response = HtmlResponse(
        "http://127.0.0.1/login",
        headers={"Set-Cookie": ["session=abc; Path=/; HttpOnly", "theme=dark; Max-Age=3600"]},
    )
    jars[None].extract_cookies(response, request)
    jars[2].extract_cookies(HtmlResponse("http://127.0.0.1/", headers={"Set-Cookie": "other=1"}), request)
    saved = json.loads(json.dumps(jars_to_json(jars)))
    restored: dict[Any, CookieJar] = {None: CookieJar(), 2: CookieJar()}
    assert jars_from_json(saved, restored) == 3
    for key in jars:
        assert sorted((c.name, c.value, c.path, c.expires) for c in restored[key]) == sorted(
            (c.name, c.value, c.path, c.expires) for c in jars[key]
        )
    assert next(c for c in restored[None] if c.name == "session").has_nonstandard_attr("HttpOnly")


def test_http_session_survives_sigkill(demo_site, scrapy_project_env, tmp_path):
    """Killed after logging in and resumed, the crawl keeps its session cookie: no second login, no login page."""
    demo_site.reset()
    job, feed = tmp_path / "job", tmp_path / "items.jsonl"
    settings = _settings(job, feed, DOWNLOAD_DELAY=0.1, CONCURRENT_REQUESTS=2)
    killed_at = _kill_after_a_checkpoint_with_items(
        scrapy_project_env, "members", settings, feed, job, tmp_path / "run1.log", items=8
    )
    result = scrapy_project_env.run("crawl", "members", settings=settings, timeout=240)
    assert result.returncode == 0, result.stderr

    log = demo_site.log()
    assert [entry["path"] for entry in log].count("/login") == 1
    after = [e for e in log if e["t"] > killed_at and e["path"].startswith("/members/")]
    assert after and all("session=" in (e["cookie"] or "") for e in after)
    items = _items(feed)
    assert {item["sku"] for item in items} == {f"M-{k}" for k in range(1, 51)}
    assert all(item["title"].startswith("Member item") for item in items)
    assert "Sessions restored: " in result.stderr

    # Cookies are credentials: owner-only files, masked by `show` unless revealed.
    for path in job.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    token = next(e["cookie"] for e in after).split("session=")[1].split(";")[0]
    shown = subprocess.run([sys.executable, "-m", "scrapy_resilience", "show", str(job)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and token not in shown.stdout
    revealed = subprocess.run([sys.executable, "-m", "scrapy_resilience", "show", str(job), "--reveal-secrets"],
                              capture_output=True, text=True, timeout=60)
    assert token in revealed.stdout


def test_sessions_switch_keeps_cookies_out(demo_site, scrapy_project_env, tmp_path):
    """RESILIENCE_CHECKPOINT_SESSIONS=False keeps cookies out of every checkpoint."""
    demo_site.reset()
    job, feed = tmp_path / "job", tmp_path / "items.jsonl"
    result = scrapy_project_env.run(
        "crawl", "members", settings=_settings(job, feed, RESILIENCE_CHECKPOINT_SESSIONS=False), timeout=240
    )
    assert result.returncode == 0, result.stderr
    manifests = list((job / "checkpoints").glob("checkpoint-*.json"))
    assert manifests
    for manifest in manifests:
        document = json.loads(manifest.read_text())
        assert document["data"]["browser_state"] == {}
        assert "session=" not in manifest.read_text()


def test_browser_session_survives_sigkill(demo_site, scrapy_project_env, tmp_path):
    """A cookie and a localStorage token set by the site's JavaScript are there again after a SIGKILL and resume."""
    demo_site.reset()
    job, feed = tmp_path / "job", tmp_path / "items.jsonl"
    settings = _settings(job, feed, DOWNLOAD_DELAY=0.3)
    killed_at = _kill_after_a_checkpoint_with_items(
        scrapy_project_env, "members_js", settings, feed, job, tmp_path / "run1.log", items=4
    )
    result = scrapy_project_env.run("crawl", "members_js", settings=settings, timeout=300)
    assert result.returncode == 0, result.stderr

    log = demo_site.log()
    assert [entry["path"] for entry in log].count("/members-js/") == 1, "the resumed crawl logged in again"
    checks_after = [e for e in log if e["t"] > killed_at and e["path"].startswith("/members-js/check.html")]
    assert checks_after and all("js_session=" in (e["cookie"] or "") for e in checks_after)
    items = _items(feed)
    assert {item["n"] for item in items} == set(range(1, 31))
    assert {item["status"] for item in items} == {"Welcome back"}
    assert len({item["token"] for item in items}) == 1
