"""A status-event receiver in a thread of its own, for drills that drive a real `notifier serve` synchronously:
it checks each POST's signature with its own HMAC code, keeps every POST, and answers 500 while told to."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def signed_by(header: str, body: bytes, secret: str) -> bool:
    parts = [part.split("=", 1) for part in header.split(",")]
    timestamp = next(value for key, value in parts if key == "t")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, value in parts if key == "v1")


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # a listen backlog like a production server's (http.server's is 5)
    daemon_threads = True


class EventReceiver:
    def __init__(self) -> None:
        self.secret = ""
        self.failing = False
        self.events: dict[str, dict] = {}  # by id: what a receiver that drops repeats keeps
        self.posts: Counter[str] = Counter()  # POSTs per id, repeats included
        self.arrived: dict[str, float] = {}  # by id: when it first came (time.time())
        self.refused = 0
        self.badly_signed = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802  (the http.server name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    if receiver.failing:
                        receiver.refused += 1
                        status = 500
                    elif not signed_by(self.headers.get("Notifier-Signature", "t=0"), body, receiver.secret):
                        receiver.badly_signed += 1
                        status = 400
                    else:
                        event = json.loads(body)
                        assert self.headers["Idempotency-Key"] == event["id"]
                        receiver.posts[event["id"]] += 1
                        receiver.events.setdefault(event["id"], event)
                        receiver.arrived.setdefault(event["id"], time.time())
                        status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def start(self) -> EventReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of(self, notification_id: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events.values() if e["data"]["notification_id"] == notification_id]
