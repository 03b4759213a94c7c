"""The demo site's API, as every crawl test relies on it (plain urllib, no Scrapy)."""

from __future__ import annotations

import errno
import re
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar
from typing import Any

import pytest


def fetch(url: str, timeout: float = 10, opener: Any = None) -> tuple[int, Any, str]:
    """(status, headers, body) of a GET, error statuses included."""
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=timeout) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def raw_get(url: str) -> bytes:
    """Send one GET on a bare socket and return what comes back (raises on a reset)."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].partition("/")[2]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def links(body: str, cls: str = "product") -> list[str]:
    return re.findall(rf'<li class="{cls}"><a href="([^"]+)"', body)


def test_list_pages_link_every_product_once_and_chain_with_next(demo_site: Any) -> None:
    """ceil(P/20) list pages of 20 product links each, chained by `next` links, cover products 1..P once."""
    info = demo_site.info()
    assert info["products"] == 3000 and info["pages"] == 150
    status, _, home = fetch(demo_site.url + "/")
    assert status == 200 and "/catalogue/page-1.html" in home
    seen, page = [], "page-1.html"
    while page:
        status, _, body = fetch(f"{demo_site.url}/catalogue/{page}")
        assert status == 200
        seen += links(body)
        nxt = re.search(r'<li class="next"><a href="([^"]+)"', body)
        page = nxt.group(1) if nxt else ""
    numbers = [int(re.search(r"/product/(\d+)", href).group(1)) for href in seen]
    assert numbers == list(range(1, 3001))


def test_dead_links_are_the_announced_fraction_and_answer_404(demo_site: Any) -> None:
    """--dead-links 0.1: exactly 10% of product links end in -gone.html and give 404; live ones give 200."""
    info = demo_site.info()
    assert len(info["dead"]) == 300 and info["live"] == 2700
    dead = info["dead"][0]
    page = (dead - 1) // 20 + 1
    _, _, body = fetch(f"{demo_site.url}/catalogue/page-{page}.html")
    assert f"/product/{dead}-gone.html" in links(body)
    assert fetch(f"{demo_site.url}/product/{dead}-gone.html")[0] == 404
    live = next(k for k in range(1, 3001) if k not in set(info["dead"]))
    assert fetch(f"{demo_site.url}/product/{live}.html")[0] == 200


def test_detail_page_has_title_price_and_sku(demo_site: Any) -> None:
    """A detail page carries <h1 class="title">, <p class="price"> and <span class="sku">K</span>."""
    live = next(k for k in range(1, 3001) if k not in set(demo_site.info()["dead"]))
    status, headers, body = fetch(f"{demo_site.url}/product/{live}.html")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert re.search(r'<h1 class="title">[^<]+</h1>', body)
    assert re.search(r'<p class="price">\d+\.\d\d</p>', body)
    assert f'<span class="sku">{live}</span>' in body


def test_second_host_serves_the_same_site_on_the_same_port(demo_site: Any) -> None:
    """url2 is 127.0.0.2 on the same port and serves identical pages."""
    assert demo_site.url2 == f"http://127.0.0.2:{demo_site.port}"
    assert fetch(demo_site.url2 + "/product/5.html")[2] == fetch(demo_site.url + "/product/5.html")[2]


def test_pages_are_deterministic_from_the_seed(start_demo_site: Any) -> None:
    """Two sites with the same seed serve the same catalogue; another seed gives another one."""
    a, b, c = (start_demo_site("--products", "45", "--seed", seed, "--host", "127.0.0.1") for seed in "778")
    assert a.port != b.port
    assert fetch(a.url + "/catalogue/page-2.html")[2] == fetch(b.url + "/catalogue/page-2.html")[2]
    assert a.info()["dead"] == b.info()["dead"] and len(a.info()["dead"]) == 4
    assert fetch(a.url + "/catalogue/page-1.html")[2] != fetch(c.url + "/catalogue/page-1.html")[2]


def test_keyed_status_fault_fails_n_times_then_succeeds(demo_site: Any) -> None:
    """/fault/status/CODE fails `times` times per key, then answers 200; keys count apart."""
    url = demo_site.url + "/fault/status/503?key=k1&times=2"
    assert [fetch(url)[0] for _ in range(3)] == [503, 503, 200]
    assert fetch(demo_site.url + "/fault/status/503?key=k2&times=1")[0] == 503
    assert [fetch(demo_site.url + "/fault/status/500?key=forever")[0] for _ in range(3)] == [500] * 3


def test_malformed_fault_routes_answer_400(demo_site: Any) -> None:
    """A fault route with a malformed number answers 400 and the site keeps serving."""
    assert fetch(demo_site.url + "/fault/status/abc")[0] == 400
    assert fetch(demo_site.url + "/fault/status/503?times=x")[0] == 400
    assert fetch(demo_site.url + "/")[0] == 200


def test_keyed_fault_counter_is_exact_under_concurrency(demo_site: Any) -> None:
    """40 parallel requests on one key with times=7 get exactly 7 failures."""
    url = demo_site.url + "/fault/status/502?key=parallel&times=7"
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: fetch(url)[0], range(40)))
    assert statuses.count(502) == 7 and statuses.count(200) == 33


def test_retry_after_in_seconds_and_as_http_date(demo_site: Any) -> None:
    """Retry-After is sent as delta-seconds when asked, and as an HTTP-date in the future."""
    status, headers, _ = fetch(demo_site.url + "/fault/status/429?key=ra&times=1&retry_after=3")
    assert status == 429 and headers["Retry-After"] == "3"
    before = time.time()
    status, headers, _ = fetch(demo_site.url + "/fault/retry-after-date?key=rd&seconds=30&times=1")
    assert status == 429
    assert parsedate_to_datetime(headers["Retry-After"]).timestamp() >= before + 29
    assert fetch(demo_site.url + "/fault/retry-after-date?key=rd&seconds=30&times=1")[0] == 200


def test_fault_reset_sends_a_tcp_rst(demo_site: Any) -> None:
    """/fault/reset aborts with a real RST (ECONNRESET, not a clean EOF) `times` times, then 200."""
    url = demo_site.url + "/fault/reset?key=rst&times=2"
    for _ in range(2):
        with pytest.raises(ConnectionResetError) as caught:
            raw_get(url)
        assert caught.value.errno == errno.ECONNRESET
    assert raw_get(url).startswith(b"HTTP/1.1 200")


def test_slow_and_hanging_routes_outlast_a_short_client_timeout(demo_site: Any) -> None:
    """/fault/slow delays its answer; /fault/hang never answers (logged with status 0), or N times with times=N."""
    demo_site.reset()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        fetch(demo_site.url + "/fault/slow?delay=5", timeout=0.3)
    assert fetch(demo_site.url + "/fault/slow?delay=0.01")[0] == 200
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        fetch(demo_site.url + "/fault/hang", timeout=0.3)
    assert {"path": "/fault/hang", "status": 0}.items() <= demo_site.log()[-1].items()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        fetch(demo_site.url + "/fault/hang?key=once&times=1", timeout=0.3)
    assert fetch(demo_site.url + "/fault/hang?key=once&times=1")[0] == 200
    demo_site.reset()


def test_outage_window_in_each_mode(demo_site: Any) -> None:
    """Within the outage window every non-control path fails (503 / RST / refused); outside it, 200."""
    demo_site.reset()
    now = time.time()
    demo_site.set_faults(outage={"start": now - 1, "duration": 600, "mode": "503", "retry_after": 5})
    status, headers, _ = fetch(demo_site.url + "/product/1.html")
    assert status == 503 and headers["Retry-After"] == "5"
    assert fetch(demo_site.url2 + "/fault/status/200?key=o")[0] == 503
    for mode in ("reset", "refuse"):
        demo_site.set_faults(outage={"start": now - 1, "duration": 600, "mode": mode})
        with pytest.raises(ConnectionResetError):
            raw_get(demo_site.url + "/product/1.html")
    demo_site.set_faults(outage={"start": now - 20, "duration": 10})
    assert fetch(demo_site.url + "/product/1.html")[0] == 200
    demo_site.set_faults(outage={"start": now + 3600, "duration": 10})
    assert fetch(demo_site.url + "/product/1.html")[0] == 200
    assert [entry["status"] for entry in demo_site.log()] == [503, 503, 0, 0, 200, 200]
    demo_site.reset()


def test_silent_outage_on_one_host_and_a_503_retry_after_date(demo_site: Any) -> None:
    """A silent outage never answers, on the listed hosts only; retry-after-date can answer 503."""
    demo_site.reset()
    demo_site.set_faults(outage={"start": time.time() - 1, "duration": 600, "mode": "silent", "hosts": ["127.0.0.2"]})
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        fetch(demo_site.url2 + "/product/1.html", timeout=0.5)
    assert fetch(demo_site.url + "/product/1.html")[0] == 200
    demo_site.set_faults(outage=None)
    status, headers, _ = fetch(demo_site.url + "/fault/retry-after-date?key=rd503&seconds=30&times=1&status=503")
    assert status == 503 and headers["Retry-After"].endswith("GMT")
    assert [entry["status"] for entry in demo_site.log()] == [0, 200, 503]
    demo_site.reset()


def test_rate_limit_is_per_host_with_retry_after(demo_site: Any) -> None:
    """Beyond max_per_second requests in a second a host gets 429 + Retry-After; the other host is unaffected."""
    demo_site.reset()
    demo_site.set_faults(rate_limit={"max_per_second": 3, "retry_after": 2})
    statuses = [fetch(demo_site.url + "/")[0] for _ in range(3)]
    for _ in range(50):
        status, headers, _ = fetch(demo_site.url + "/")
        if status == 429:
            break
    assert statuses == [200] * 3 and status == 429 and headers["Retry-After"] == "2"
    assert fetch(demo_site.url2 + "/")[0] == 200
    demo_site.reset()


def test_slow_fault_delays_a_fraction_of_paths(demo_site: Any) -> None:
    """slow={fraction: 1} delays every page; fraction 0 none."""
    demo_site.reset()
    demo_site.set_faults(slow={"fraction": 1.0, "delay": 5})
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        fetch(demo_site.url + "/product/3.html", timeout=0.3)
    demo_site.set_faults(slow={"fraction": 0.0, "delay": 30})
    assert fetch(demo_site.url + "/product/3.html")[0] == 200
    demo_site.reset()


def test_bad_fault_specs_are_refused(demo_site: Any) -> None:
    """Unknown fault kinds, unknown outage modes and missing fields are rejected with a message."""
    for spec in ({"bogus": {}}, {"outage": {"duration": 1, "mode": "smoke"}}, {"rate_limit": {"retry_after": 1}}):
        with pytest.raises(demo_site.Error):
            demo_site.set_faults(**spec)


def test_login_session_and_its_expiry(demo_site: Any) -> None:
    """Member pages need the session cookie set by /login; without it, or once expired, they say 'Please log in'."""
    status, _, body = fetch(demo_site.url + "/members/page-1.html")
    assert status == 200 and "<h1>Please log in</h1>" in body
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, _, body = fetch(demo_site.url + "/login", opener=opener)
    assert status == 200 and "<h1>Members</h1>" in body
    assert [cookie.name for cookie in jar] == ["session"]
    _, _, body = fetch(demo_site.url + "/members/page-1.html", opener=opener)
    assert re.findall(r'href="/members/item-(\d+)\.html"', body) == [str(k) for k in range(1, 11)]
    _, _, body = fetch(demo_site.url + "/members/item-3.html", opener=opener)
    assert '<h1 class="title">Member item 3</h1>' in body
    forged = urllib.request.Request(demo_site.url + "/members/item-3.html", headers={"Cookie": "session=0.1.abc"})
    assert "Please log in" in fetch(forged)[2]  # type: ignore[arg-type]
    demo_site.expire_sessions()
    assert "Please log in" in fetch(demo_site.url + "/members/item-3.html", opener=opener)[2]


def test_js_pages_carry_their_links_only_in_script(demo_site: Any) -> None:
    """The /js/ list and detail pages have no product links or titles in their HTML, only in JavaScript."""
    _, _, body = fetch(demo_site.url + "/js/page-1.html")
    assert links(body) == [] and "/js/product/1.html" in body and "<script>" in body
    _, _, body = fetch(demo_site.url + "/js/product/1.html")
    assert '<h1 class="title"></h1>' in body
    _, _, body = fetch(demo_site.url + "/members-js/")
    assert "localStorage.setItem('demo_token'" in body and "document.cookie = 'js_session=" in body


def test_log_records_every_non_control_request(demo_site: Any) -> None:
    """The log has t, done, host, path, status, cookie, ua of each request, none of the control API; reset clears it."""
    demo_site.reset()
    before = time.time()
    request = urllib.request.Request(
        demo_site.url2 + "/product/2.html?x=1", headers={"User-Agent": "probe/1", "Cookie": "a=b"}
    )
    fetch(request)  # type: ignore[arg-type]
    demo_site.info()
    (entry,) = demo_site.log()
    assert entry["t"] >= before - 1
    assert entry["done"] >= entry["t"]
    assert {k: v for k, v in entry.items() if k not in ("t", "done")} == {
        "host": "127.0.0.2",
        "path": "/product/2.html?x=1",
        "status": 200,
        "cookie": "a=b",
        "ua": "probe/1",
    }
    demo_site.reset()
    assert demo_site.log() == []


def test_shutdown_is_clean_while_a_request_hangs(start_demo_site: Any) -> None:
    """SIGTERM stops the site (exit 0) even while a /fault/hang request is held open."""
    site = start_demo_site("--products", "20", "--host", "127.0.0.1")
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as sock:
        sock.sendall(b"GET /fault/hang HTTP/1.1\r\nHost: x\r\n\r\n")
        # The request is in the log once the handler holds it.
        deadline = time.monotonic() + 10
        while not site.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        site.stop()
    assert site.process.returncode == 0
