"""A webhook receiver on loopback, written the way the README tells integrators to verify.

It checks `X-AutoEdit-Signature` itself (stdlib hmac, no project code), answers 500 to the first
`fail_first` deliveries it sees and 200 after, and keeps each accepted event once by its
`Idempotency-Key`, as a receiver should.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verify(secret: bytes, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The README's verification snippet."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Received:
    at: float
    status: int
    key: str
    attempt: str
    signed: bool


@dataclass
class WebhookReceiver:
    secret: bytes
    fail_first: int = 0
    seen: list[Received] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: Any, body: bytes) -> int:
        signed = verify(self.secret, headers.get("X-AutoEdit-Signature", ""), body)
        key = headers.get("Idempotency-Key", "")
        with self.lock:
            if not signed:
                status = 401
            elif sum(r.status != 401 for r in self.seen) < self.fail_first:
                status = 500
            else:
                status = 200
                if key in self.accepted:
                    self.duplicates += 1
                else:
                    self.accepted[key] = json.loads(body)
            self.seen.append(Received(time.time(), status, key, headers.get("X-AutoEdit-Delivery-Attempt", ""), signed))
        return status


def serve(receiver: WebhookReceiver) -> tuple[ThreadingHTTPServer, str]:
    """Start `receiver` on a free loopback port in a daemon thread: the server and its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.handle(self.headers, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hooks/autoedit"
