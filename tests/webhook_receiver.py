"""A local webhook receiver for the NOTIFY tests: records JSON POSTs, or never answers.

The demo site cannot play a webhook, so this is a small purpose-built server
on 127.0.0.1 running in a thread. ``hang=True`` reads the request and then
never answers until the receiver is stopped, like a webhook that hangs.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self, hang: bool = False) -> None:
        self.documents: list[dict[str, Any]] = []
        self.received = threading.Event()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.documents.append(json.loads(body))
                receiver.received.set()
                if hang:
                    receiver.released.wait()
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
