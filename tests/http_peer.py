"""A real HTTP server in the test's event loop standing in for a webhook receiver, the Telegram Bot API or
the external user service: it records every request and answers what it is told to."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port


@dataclass
class Recorded:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Peer:
    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    # (status, JSON body) or (status, JSON body, headers) answers, used in order; the last one repeats.
    # A callable gets the request.
    answers: list = field(default_factory=lambda: [(200, {"ok": True})])
    server: HTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, request: Recorded) -> tuple:
        index = min(len(self.requests) - 1, len(self.answers) - 1)
        answer = self.answers[index]
        answer = answer(request) if callable(answer) else answer
        return answer if len(answer) == 3 else (*answer, {})

    def start(self) -> Peer:
        peer = self

        class Handler(tornado.web.RequestHandler):
            def post(self, path):
                recorded = Recorded(self.request.path, dict(self.request.headers), self.request.body)
                peer.requests.append(recorded)
                status, body, headers = peer.answer(recorded)
                self.set_status(status)
                for name, value in headers.items():
                    self.set_header(name, value)
                self.set_header("Content-Type", "application/json")
                self.finish(json.dumps(body))

        sock, self.port = bind_unused_port()
        self.server = HTTPServer(tornado.web.Application([(r"(.*)", Handler)]))
        self.server.add_sockets([sock])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
