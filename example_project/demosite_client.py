"""Start the demo site as a child process and drive its control API (stdlib only).

Shared by the test suite's ``demo_site`` fixture and by ``demo.py``, so that
both start the site, wait for it and talk to it the same way::

    with DemoSite.start("--products", "300") as site:
        site.set_faults(rate_limit={"max_per_second": 5, "retry_after": 1})
        ...
        print(len(site.log()))
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

SCRIPT = Path(__file__).with_name("demosite.py")
# Control calls are local and tiny; a slow answer means a wedged site, which should fail loudly.
CONTROL_TIMEOUT = 10.0


class DemoSiteError(RuntimeError):
    """The site did not start, or refused a control call."""


class DemoSite:
    """A running demo site: its URLs on both hosts and its control API."""

    Error = DemoSiteError

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        # The same site on a second loopback address: a second "domain" and download slot.
        self.url2 = f"http://127.0.0.2:{self.port}"

    @classmethod
    def start(cls, *args: str, timeout: float = 30.0) -> DemoSite:
        """Run ``demosite.py --port 0 ARGS`` and wait (at most ``timeout``) for its LISTENING line."""
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--port", "0", *args], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        line = _first_line(process.stdout, timeout)
        if not line.startswith("LISTENING "):
            process.kill()
            process.wait()
            raise DemoSiteError(f"demo site did not start within {timeout}s (got {line!r})")
        return cls(process, line.split()[1])

    def set_faults(self, **spec: Any) -> dict[str, Any]:
        """Add (or, with None, remove) global faults: outage, rate_limit, slow, crash_page."""
        return self._call("/_control/faults", spec)

    def reset(self) -> None:
        """Clear the faults, the keyed fault counters and the request log."""
        self._call("/_control/reset", {})

    def expire_sessions(self) -> None:
        """Invalidate every session cookie issued so far."""
        self._call("/_control/expire-sessions", {})

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        """Every non-control request since the last reset, in order of answer (from index ``since``)."""
        return self._call(f"/_control/log?since={since}")

    def info(self) -> dict[str, Any]:
        """The catalogue: products, list pages, dead product numbers, live count, members."""
        return self._call("/_control/info")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> DemoSite:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise DemoSiteError(f"{path}: {exc.code} {exc.read().decode(errors='replace')}") from None


def _first_line(stream: IO[str], timeout: float) -> str:
    # readline() has no timeout; a reader thread gives the wait a deadline.
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        return ""
