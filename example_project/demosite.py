"""The demo site: a small shop that misbehaves on request (stdlib only).

    python example_project/demosite.py --port 0 [--host 127.0.0.1 --host 127.0.0.2]
        [--seed 1] [--products 3000] [--dead-links 0.1] [--members 50]

It prints ``LISTENING http://127.0.0.1:PORT`` as its first line and serves
every host on that one port, so that 127.0.0.2 is a second "domain" (a
second Scrapy download slot) of the same site. Everything it serves is
deterministic from ``--seed``; what it does wrong is chosen by the caller:

* keyed fault routes under ``/fault/`` (each key counts on its own, so tests
  do not collide), and
* global faults posted as JSON to ``/_control/faults`` (an outage window, a
  per-host rate limit, slow pages), cleared by ``/_control/reset``.

``/_control/log`` lists every non-control request (time of arrival, host,
path, status, Cookie and User-Agent headers). Status 0 in the log means no
HTTP answer was given (connection reset, refused, or a hang). docs/usage/demo.md
("The demo site") documents every route. It is a single file on
purpose: the test suite, the demo and a curious user all run it as a script.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.server
import io
import json
import math
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import defaultdict, deque
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, urlsplit

PER_PAGE = 20
# Enough of a request line to tell a control call during a "refuse" outage: "POST /_control/".
CONTROL_PEEK = b"POST /_control/"
MEMBERS_PER_PAGE = 10
# A hang lasts at most this long so that a forgotten client never pins a thread forever.
HANG_SECONDS = 3600.0
# Each global fault kind and the fields it must have (the others are optional).
REQUIRED = {
    "outage": ("duration",),
    "rate_limit": ("max_per_second",),
    "slow": ("fraction", "delay"),
    "crash_page": ("path",),
}
FAULT_KINDS = tuple(REQUIRED)
OUTAGE_MODES = ("503", "reset", "refuse", "silent")
ADJECTIVES = ("Sturdy", "Tiny", "Vintage", "Smart", "Quiet", "Bright", "Rustic", "Compact", "Deluxe", "Classic")
NOUNS = ("Kettle", "Lamp", "Backpack", "Notebook", "Teapot", "Chair", "Clock", "Umbrella", "Mug", "Radio")

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | Demo Shop</title></head>
<body><header><a href="/">Demo Shop</a> <a href="/catalogue/page-1.html">Catalogue</a>
<a href="/js/">JS catalogue</a> <a href="/members/">Members</a></header>
<main>{body}</main><footer>Demo Shop, a local test site.</footer>{script}</body></html>
"""


class Catalogue:
    """Products, dead links and member items, all derived from the seed."""

    def __init__(self, seed: int, products: int, dead_fraction: float, members: int) -> None:
        self.seed = seed
        self.products = products
        self.members = members
        self.pages = max(1, math.ceil(products / PER_PAGE))
        self.member_pages = max(1, math.ceil(members / MEMBERS_PER_PAGE))
        # An exact number of dead products, so "pages expected" is known in advance.
        count = round(products * dead_fraction)
        self.dead = frozenset(random.Random(f"{seed}:dead").sample(range(1, products + 1), count))

    def product(self, k: int) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:product:{k}")
        title = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {k}"
        return {"sku": str(k), "title": title, "price": f"{rng.uniform(2, 200):.2f}"}

    def on_page(self, n: int) -> range:
        return range((n - 1) * PER_PAGE + 1, min(n * PER_PAGE, self.products) + 1)

    def href(self, k: int, prefix: str = "") -> str:
        return "{}/product/{}{}.html".format(prefix, k, "-gone" if k in self.dead else "")

    def info(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "products": self.products,
            "pages": self.pages,
            "dead": sorted(self.dead),
            "live": self.products - len(self.dead),
            "members": self.members,
            "member_pages": self.member_pages,
        }


class Faults:
    """Global faults, keyed fault counters, sessions and the request log, behind one lock."""

    def __init__(self, secret: bytes) -> None:
        self.lock = threading.Lock()
        self.secret = secret
        self.session_generation = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.spec: dict[str, Any] = {}
            self.counters: dict[tuple[str, str], int] = defaultdict(int)
            self.log: list[dict[str, Any]] = []
            self.recent: dict[str, deque[float]] = defaultdict(deque)
            self.reset_at = time.time()

    def update(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {list(FAULT_KINDS)}")
        for kind, value in spec.items():
            missing = set(REQUIRED[kind]) - set(value or {})
            if value is not None and missing:
                raise ValueError(f"{kind} needs {sorted(missing)}")
        outage = spec.get("outage")
        if outage is not None:
            if str(outage.get("mode", "503")) not in OUTAGE_MODES:
                raise ValueError(f"outage mode must be one of {list(OUTAGE_MODES)}")
            outage.setdefault("start", time.time())
        with self.lock:
            # Merged, so that faults can be added one call at a time; None removes one.
            for kind, value in spec.items():
                if value is None:
                    self.spec.pop(kind, None)
                else:
                    self.spec[kind] = value

    def count(self, route: str, key: str) -> int:
        """Increment and return the number of requests seen for this keyed route."""
        with self.lock:
            self.counters[route, key] += 1
            return self.counters[route, key]

    def outage_mode(self, now: float, host: str) -> str | None:
        outage = self.spec.get("outage")
        if outage and outage["start"] <= now < self.outage_end() and host in outage.get("hosts", (host,)):
            return str(outage.get("mode", "503"))
        return None

    def outage_end(self) -> float:
        outage = self.spec.get("outage") or {}
        return float(outage.get("start", 0)) + float(outage.get("duration", 0))

    def rate_limited(self, host: str, now: float) -> float | None:
        """The Retry-After to send if this host is over its rate (a sliding one-second window)."""
        limit = self.spec.get("rate_limit")
        if not limit:
            return None
        with self.lock:
            window = self.recent[host]
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= int(limit["max_per_second"]):
                return float(limit.get("retry_after", 1))
            window.append(now)
        return None

    def slow_delay(self, path: str) -> float:
        # Chosen per path (not per request), so the same pages are slow every time, as on a real site.
        slow = self.spec.get("slow")
        if not slow:
            return 0.0
        digest = hashlib.sha256(path.encode()).digest()
        return float(slow["delay"]) if int.from_bytes(digest[:4], "big") / 2**32 < float(slow["fraction"]) else 0.0

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            # A slow request that arrived before the last reset belongs to an earlier test: drop it.
            if entry["t"] >= self.reset_at:
                self.log.append(entry)

    def new_session(self) -> str:
        nonce = f"{self.session_generation}.{random.getrandbits(64)}"
        return nonce + "." + hmac.new(self.secret, nonce.encode(), "sha256").hexdigest()[:16]

    def session_valid(self, token: str | None) -> bool:
        # Signed, not stored: a session survives /_control/reset and a restart with the same seed.
        if not token or token.count(".") != 2:
            return False
        nonce, _, signature = token.rpartition(".")
        expected = hmac.new(self.secret, nonce.encode(), "sha256").hexdigest()[:16]
        return hmac.compare_digest(signature, expected) and nonce.split(".")[0] == str(self.session_generation)


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes one request; every answer carries a Content-Length so keep-alive works."""

    protocol_version = "HTTP/1.1"
    server_version = "DemoShop/1.0"
    server: DemoServer
    entry: dict[str, Any] | None = None  # the current request's log entry, until it is recorded

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is /_control/log, not stderr."""

    def handle(self) -> None:
        # "refuse": a new connection is reset before its request is read, the nearest a live
        # listener gets to a refusal. The control API stays reachable: it is recognised by peeking.
        if self.server.faults.outage_mode(time.time(), self.server.host) == "refuse" and not self._peek_control():
            self.entry = {"t": time.time(), "host": self.server.host, "path": "", "status": 0, "cookie": "", "ua": ""}
            self._reset()
            return
        super().handle()

    def _peek_control(self) -> bool:
        try:
            head = self.connection.recv(len(CONTROL_PEEK), socket.MSG_PEEK)
        except OSError:
            return False
        # A request line sent in pieces is taken for a site request; clients send it whole.
        return head.partition(b" ")[2].startswith(b"/_control/")

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        started = time.time()
        # One handler serves a whole keep-alive connection: forget the previous request's log entry.
        self.entry = None
        parts = urlsplit(self.path)
        self.route, self.query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body_in = self.rfile.read(length) if length else b""
        if self.route.startswith("/_control/"):
            self._control()
            return
        self.entry = {
            "t": started,
            "host": self.server.host,
            "path": self.path,
            "status": 0,
            "cookie": self.headers.get("Cookie", ""),
            "ua": self.headers.get("User-Agent", ""),
        }
        faults = self.server.faults
        mode = faults.outage_mode(started, self.server.host)
        if mode in ("reset", "refuse"):
            self._reset()
        elif mode == "silent":
            # Accepted, never answered: the client's DOWNLOAD_TIMEOUT ends it (or the outage's end does).
            self._record(0)
            self.server.stopping.wait(max(0.0, min(faults.outage_end() - started, HANG_SECONDS)))
            self._reset()
        elif mode == "503":
            outage = faults.spec.get("outage") or {}
            retry = outage.get("retry_after")
            self._html(
                503,
                "Service Unavailable",
                "<h1>Down for maintenance</h1>",
                {"Retry-After": str(retry)} if retry is not None else None,
            )
        elif (retry_after := faults.rate_limited(self.server.host, started)) is not None:
            self._html(429, "Too Many Requests", "<h1>Slow down</h1>", {"Retry-After": _seconds(retry_after)})
        else:
            delay = faults.slow_delay(parts.path)
            if delay:
                self.server.stopping.wait(delay)
            try:
                self._site()
            except ValueError as exc:  # a malformed number in a fault route: the caller's mistake, not ours
                self._html(400, "Bad request", f"<h1>Bad request</h1><p>{exc}</p>")

    # --- answers -------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(
        self, status: int, title: str, body: str, headers: dict[str, str] | None = None, script: str = ""
    ) -> None:
        page = PAGE.format(title=title, body=body, script=f"<script>{script}</script>" if script else "")
        self._send(status, page.encode(), "text/html; charset=utf-8", headers)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self._html(302, "Moved", f'<a href="{location}">{location}</a>', {"Location": location, **(headers or {})})

    def _record(self, status: int) -> None:
        """Log the request once, when its answer is decided (``t`` stays its arrival time)."""
        if self.entry is not None:
            self.entry["status"] = status
            self.entry["done"] = time.time()
            self.server.faults.record(self.entry)
            self.entry = None

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), not a polite FIN."""
        self._record(0)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The socket only really closes once its file objects are closed too; the
        # handler still flushes wfile after us, so it gets a harmless stand-in.
        self.rfile.close()
        self.wfile.close()
        self.connection.close()
        self.wfile = io.BytesIO()
        self.close_connection = True

    # --- routes --------------------------------------------------------------------

    def _control(self) -> None:
        faults, action = self.server.faults, self.route[len("/_control/") :]
        if action == "faults" and self.command == "POST":
            try:
                faults.update(json.loads(self.body_in or b"{}"))
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, faults.spec)
        elif action == "faults":
            self._json(200, faults.spec)
        elif action == "reset" and self.command == "POST":
            faults.reset()
            self._json(200, {"ok": True})
        elif action == "expire-sessions" and self.command == "POST":
            with faults.lock:
                faults.session_generation += 1
            self._json(200, {"ok": True})
        elif action == "log":
            # ?since=N: only entries from index N on, so that a progress display can poll cheaply.
            since = int(self.query.get("since", 0))
            with faults.lock:
                entries = faults.log[since:]
            self._json(200, entries)
        elif action == "info":
            self._json(200, self.server.catalogue.info())
        else:
            self._json(404, {"error": "unknown control route"})

    def _site(self) -> None:
        route, cat = self.route, self.server.catalogue
        if route in ("/", "/index.html"):
            self._html(200, "Home", '<h1>Demo Shop</h1><p><a href="/catalogue/page-1.html">All products</a></p>')
        elif route == "/robots.txt":
            self._send(200, b"User-agent: *\nAllow: /\n", "text/plain")
        elif route.startswith("/fault/"):
            self._fault(route[len("/fault/") :])
        elif route == "/js/":
            self._html(200, "JS catalogue", '<h1>JS catalogue</h1><a href="/js/page-1.html">Start</a>')
        elif route == "/login":
            self._login()
        elif route.startswith("/members-js/"):
            self._members_js(route)
        elif route.startswith("/members/"):
            self._members(route)
        elif (n := _number(route, "/catalogue/page-", ".html")) and n <= cat.pages:
            self._list_page(n)
        elif (n := _number(route, "/js/page-", ".html")) and n <= cat.pages:
            self._js_list_page(n)
        elif (k := _number(route, "/product/", ".html")) and k <= cat.products and k not in cat.dead:
            self._product(k)
        elif (k := _number(route, "/js/product/", ".html")) and k <= cat.products and k not in cat.dead:
            self._js_product(k)
        else:
            self._html(404, "Not found", "<h1>Page not found</h1>")

    def _list_page(self, n: int) -> None:
        cat = self.server.catalogue
        items = "".join(
            '<li class="product"><a href="{href}">{title}</a> <span class="price">{price}</span></li>'.format(
                href=cat.href(k), **cat.product(k)
            )
            for k in cat.on_page(n)
        )
        body = (
            f'<h1>Catalogue, page {n} of {cat.pages}</h1><ol class="products">{items}</ol>'
            f'<ul class="pager">{_pager(n, cat.pages)}</ul>'
        )
        self._html(200, f"Catalogue page {n}", body)

    def _product(self, k: int) -> None:
        p = self.server.catalogue.product(k)
        body = (
            '<article><h1 class="title">{title}</h1><p class="price">{price}</p>'
            '<p>SKU <span class="sku">{sku}</span></p><p class="description">A fine {title}.</p>'
            '<a href="/catalogue/page-1.html">Back to the catalogue</a></article>'
        ).format(**p)
        self._html(200, p["title"], body)

    def _js_list_page(self, n: int) -> None:
        cat = self.server.catalogue
        data = [[cat.href(k, "/js"), cat.product(k)["title"]] for k in cat.on_page(n)]
        nxt = f"page-{n + 1}.html" if n < cat.pages else ""
        # Rendered after a short delay, as frameworks do, so a browser must wait for the links.
        script = (
            f"const DATA = {json.dumps(data)}, NEXT = {json.dumps(nxt)};\n"
            "setTimeout(() => { const ol = document.querySelector('ol.products');\n"
            "  for (const [href, title] of DATA) { const li = document.createElement('li'); const a ="
            " document.createElement('a'); a.className = 'product'; a.href = href; a.textContent = title;"
            " li.appendChild(a); ol.appendChild(li); }\n"
            "  if (NEXT) { document.querySelector('ul.pager').innerHTML ="
            " '<li class=\"next\"><a href=\"' + NEXT + '\">next</a></li>'; }\n"
            "  ol.setAttribute('data-rendered', '1'); }, 50);"
        )
        body = f'<h1>JS catalogue, page {n}</h1><ol class="products"></ol><ul class="pager"></ul>'
        self._html(200, f"JS catalogue page {n}", body, script=script)

    def _js_product(self, k: int) -> None:
        script = (
            f"const P = {json.dumps(self.server.catalogue.product(k))};\n"
            "for (const f of ['title', 'price', 'sku']) document.querySelector('.' + f).textContent = P[f];"
        )
        body = '<article><h1 class="title"></h1><p class="price"></p><p>SKU <span class="sku"></span></p></article>'
        self._html(200, "Product", body, script=script)

    def _fault(self, kind: str) -> None:
        q, faults = self.query, self.server.faults
        key, times = q.get("key", ""), int(q["times"]) if "times" in q else None
        if kind.startswith("status/"):
            seen = faults.count(kind, key)
            if times is None or seen <= times:
                headers = {"Retry-After": q["retry_after"]} if "retry_after" in q else None
                self._html(int(kind[len("status/") :]), "Fault", f"<h1>Fault {seen}</h1>", headers)
                return
        elif kind == "reset":
            if times is None or faults.count(kind, key) <= times:
                self._reset()
                return
        elif kind == "retry-after-date":
            if times is None or faults.count(kind, key) <= times:
                when = math.ceil(time.time() + float(q.get("seconds", 1)))
                status = int(q.get("status", 429))
                self._html(status, "Slow down", "<h1>Slow down</h1>", {"Retry-After": formatdate(when, usegmt=True)})
                return
        elif kind == "slow":
            self.server.stopping.wait(float(q.get("delay", 1)))
        elif kind == "hang":
            if times is None or faults.count(kind, key) <= times:
                self._record(0)
                # Waits on the server's stop event, so a hung request never delays a shutdown.
                self.server.stopping.wait(HANG_SECONDS)
                self._reset()
                return
        else:
            self._html(404, "Not found", "<h1>Unknown fault</h1>")
            return
        self._html(200, "OK", f'<h1 class="ok">ok</h1><p class="key">{key}</p>')

    def _login(self) -> None:
        # GET or POST: a form would add nothing the spiders or the tests need.
        token = self.server.faults.new_session()
        target = self.query.get("next", "/members/")
        self._redirect(target, {"Set-Cookie": f"session={token}; Path=/; HttpOnly"})

    def _members(self, route: str) -> None:
        cat = self.server.catalogue
        if not self.server.faults.session_valid(self.cookies().get("session")):
            self._html(200, "Please log in", '<h1>Please log in</h1><a href="/login">Log in</a>')
        elif route == "/members/":
            self._html(200, "Members", '<h1>Members</h1><a href="/members/page-1.html">Member items</a>')
        elif (n := _number(route, "/members/page-", ".html")) and n <= cat.member_pages:
            first = (n - 1) * MEMBERS_PER_PAGE + 1
            items = "".join(
                f'<li><a class="item" href="/members/item-{k}.html">Item {k}</a></li>'
                for k in range(first, min(first + MEMBERS_PER_PAGE - 1, cat.members) + 1)
            )
            body = (
                f'<h1>Members page {n}</h1><ol class="items">{items}</ol>'
                f'<ul class="pager">{_pager(n, cat.member_pages)}</ul>'
            )
            self._html(200, f"Members page {n}", body)
        elif (k := _number(route, "/members/item-", ".html")) and k <= cat.members:
            self._html(200, f"Member item {k}", f'<h1 class="title">Member item {k}</h1><span class="sku">M-{k}</span>')
        else:
            self._html(404, "Not found", "<h1>Page not found</h1>")

    def _members_js(self, route: str) -> None:
        if route == "/members-js/":
            # The browser session: a cookie and a localStorage value that only JavaScript sets.
            token = self.server.faults.new_session()
            script = (
                f"document.cookie = 'js_session={token}; path=/';"
                f" localStorage.setItem('demo_token', '{token}');"
                " document.querySelector('#status').textContent = 'Logged in';"
            )
            self._html(
                200, "Members JS", '<h1 id="status">Logging in</h1><a href="check.html">Check</a>', script=script
            )
        elif route == "/members-js/check.html":
            # Reads the storage back: says "Welcome back" only if the localStorage token is still there.
            script = (
                "const t = localStorage.getItem('demo_token');"
                " document.querySelector('#status').textContent = t ? 'Welcome back' : 'Please log in';"
                " document.querySelector('#token').textContent = t || '';"
            )
            self._html(200, "Members JS check", '<h1 id="status"></h1><p id="token"></p>', script=script)
        else:
            self._html(404, "Not found", "<h1>Page not found</h1>")

    def cookies(self) -> dict[str, str]:
        pairs = (part.strip().partition("=") for part in self.headers.get("Cookie", "").split(";"))
        return {name: value for name, _, value in pairs if name}


def _number(route: str, prefix: str, suffix: str) -> int | None:
    if route.startswith(prefix) and route.endswith(suffix):
        middle = route[len(prefix) : len(route) - len(suffix)]
        if middle.isdigit() and int(middle) > 0:
            return int(middle)
    return None


def _pager(n: int, pages: int) -> str:
    links = [f'<li class="previous"><a href="page-{n - 1}.html">previous</a></li>'] if n > 1 else []
    if n < pages:
        links.append(f'<li class="next"><a href="page-{n + 1}.html">next</a></li>')
    return "".join(links)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class DemoServer(http.server.ThreadingHTTPServer):
    """One listening host; all hosts of a site share the catalogue, the faults and the stop event."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, catalogue: Catalogue, faults: Faults, stopping: threading.Event):
        self.host, self.catalogue, self.faults, self.stopping = host, catalogue, faults, stopping
        super().__init__((host, port), Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, resets, killed crawls) are normal here, not errors worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def serve(hosts: list[str], port: int, catalogue: Catalogue, stopping: threading.Event) -> list[DemoServer]:
    """Bind every host on one port (the first host picks it when port is 0) and start serving."""
    faults = Faults(hashlib.sha256(f"secret:{catalogue.seed}".encode()).digest())
    for _attempt in range(20):
        servers: list[DemoServer] = []
        try:
            first = DemoServer(hosts[0], port, catalogue, faults, stopping)
            servers.append(first)
            for host in hosts[1:]:
                servers.append(DemoServer(host, first.server_address[1], catalogue, faults, stopping))
            break
        except OSError:
            for server in servers:
                server.server_close()
            if port:
                raise
    else:
        raise OSError(f"no port free on every host {hosts}")
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return servers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--host", action="append", help="address to listen on (repeatable); default 127.0.0.1 and 127.0.0.2"
    )
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--dead-links", type=float, default=0.1, help="fraction of product links that are dead")
    parser.add_argument("--members", type=int, default=50, help="items behind the login")
    args = parser.parse_args(argv)
    if args.products < 1 or not 0 <= args.dead_links < 1:
        parser.error("--products must be >= 1 and --dead-links in [0, 1)")
    hosts = args.host or ["127.0.0.1", "127.0.0.2"]
    stopping = threading.Event()
    servers = serve(hosts, args.port, Catalogue(args.seed, args.products, args.dead_links, args.members), stopping)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"LISTENING http://{hosts[0]}:{servers[0].server_address[1]}", flush=True)
    try:
        while not stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        stopping.set()
    for server in servers:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
