"""A trivial Tornado app (`python -m tests.bench.trivial PORT`): the ceiling of any Tornado handler here."""

import asyncio
import sys

import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.finish({"status": "ok"})


async def main(port: int) -> None:
    tornado.web.Application([(r"/", Hello)]).listen(port, "127.0.0.1")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
