"""A small Server-Sent Events client over a raw connection, so that a test can hold a stream open, read it
event by event, and drop it at any moment (as a browser's EventSource would)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Event:
    id: str | None
    type: str
    data: dict

    @property
    def seq(self) -> int:
        assert self.id is not None, f"{self.type} event without an id"
        return int(self.id)


class SseClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""  # the answer's body when it is not a stream (an error)
        self.comments = 0  # heartbeats seen
        self._buffer = b""
        self._chunked = False
        self.ended = False

    @classmethod
    async def open(cls, base_url: str, path: str, headers: dict[str, str] | None = None) -> SseClient:
        parts = urlsplit(base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        client = cls(reader, writer)
        lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))  # what HTTP headers are
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        client.status = int(status_line.split()[1])
        while (line := await asyncio.wait_for(reader.readline(), 30)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            client.headers[name.strip().lower()] = value.strip()
        client._chunked = client.headers.get("transfer-encoding", "").lower() == "chunked"
        if client.status != 200:
            length = int(client.headers.get("content-length", "0"))
            client.body = await asyncio.wait_for(reader.readexactly(length), 30) if length else b""
        return client

    def json(self) -> dict:
        return json.loads(self.body)

    async def _more(self) -> bool:
        if self._chunked:
            size_line = await self.reader.readline()
            if not size_line:
                return False
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return False
            self._buffer += await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            return True
        data = await self.reader.read(65536)
        self._buffer += data
        return bool(data)

    async def next_event(self, timeout: float = 30) -> Event | None:
        """The next event (comments and `retry:` lines are counted and skipped); None when the stream ended."""
        while True:
            while b"\n\n" not in self._buffer:
                if not await asyncio.wait_for(self._more(), timeout):
                    self.ended = True
                    return None
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            if "event" in fields or "data" in fields:
                return Event(fields.get("id"), fields.get("event", "message"), json.loads(fields.get("data", "{}")))

    async def events(self, count: int, timeout: float = 30) -> list[Event]:
        found = []
        while len(found) < count:
            event = await self.next_event(timeout)
            if event is None:
                break
            found.append(event)
        return found

    def close(self) -> None:
        self.writer.close()
