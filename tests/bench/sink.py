"""An SMTP sink in its own process (aiosmtpd on loopback) that counts what it accepts, for benchmarks.

Stats over HTTP: GET /stats, GET /times?notification=ID, POST /reset. Headers are read with a byte search,
not parsed, so the sink costs as little CPU as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

import tornado.web
from aiosmtpd.smtp import SMTP

NOTIFICATION = re.compile(rb"\r\nX-Notifier-Notification: ([0-9a-f]+)")
DELIVERY = re.compile(rb"\r\nX-Notifier-Delivery: ([0-9a-f]+)")
CELERY = re.compile(rb"\nX-Bench-Batch: ([0-9a-zA-Z_-]+)")


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.count = 0
        self.by_notification: dict[str, int] = {}
        self.by_recipient: dict[str, int] = {}
        self.times: dict[str, list] = {}
        self.first = None
        self.last = None


class Handler:
    def __init__(self, stats: Stats):
        self.stats = stats

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        stats = self.stats
        head = envelope.content[:4096]
        found = NOTIFICATION.search(head) or CELERY.search(head)
        key = found.group(1).decode() if found else ""
        delivery = DELIVERY.search(head)
        stats.count += len(envelope.rcpt_tos)
        stats.by_notification[key] = stats.by_notification.get(key, 0) + len(envelope.rcpt_tos)
        for recipient in envelope.rcpt_tos:
            stats.by_recipient[recipient] = stats.by_recipient.get(recipient, 0) + 1
        stats.times.setdefault(key, []).append((delivery.group(1).decode() if delivery else "", now))
        stats.first = stats.first or now
        stats.last = now
        return "250 OK"


def http_app(stats: Stats) -> tornado.web.Application:
    class StatsHandler(tornado.web.RequestHandler):
        def get(self):
            duplicates = sum(1 for n in stats.by_recipient.values() if n > 1)
            self.finish(
                {
                    "count": stats.count,
                    "by_notification": stats.by_notification,
                    "first": stats.first,
                    "last": stats.last,
                    "recipients": len(stats.by_recipient),
                    "duplicates": duplicates,
                }
            )

    class TimesHandler(tornado.web.RequestHandler):
        def get(self):
            self.finish(json.dumps(stats.times.get(self.get_argument("notification"), [])))

    class ResetHandler(tornado.web.RequestHandler):
        def post(self):
            stats.reset()
            self.finish({})

    return tornado.web.Application([("/stats", StatsHandler), ("/times", TimesHandler), ("/reset", ResetHandler)])


async def main(smtp_port: int, http_port: int) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(stats), hostname="sink", data_size_limit=0), "127.0.0.1", smtp_port
    )
    http_app(stats).listen(http_port, "127.0.0.1")
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.smtp_port, arguments.http_port))
