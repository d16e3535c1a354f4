"""The inbox streams one server holds: each user's open streams, fed in order and without gaps.

A stream sends every event of its user's log (services/inbox.py) after the number it started from, each
once, in order. Live events arrive through RabbitMQ (queue/inbox_feed.py) for every user at once; an event
numbered one past the stream's last is sent at once, an older one is dropped (sent already), and a newer one
means some were missed: the stream reads the gap from the database first. A stream that starts reads what it
has missed the same way, holding back live events meanwhile. When the feed subscribes again after the broker
was away, every stream reads what was written meanwhile; and every fourth heartbeat one read of the heads of
the users with a stream here finds a stream left behind by an announce that was lost (its writer's broker
connection was down).

The frames are Server-Sent Events: `id:` is the event's number, `event:` its type, `data:` its JSON. A
stream whose client reads too slowly (more than BUFFER frames waiting) ends with an `end` frame; the client
resumes after its last id. So does one whose token expires, one pushed out by the user's newer streams, and
every stream when the server stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable

from .errors import Unavailable
from .services.inbox import COUNTS, RESET, InboxLog, Tally, public_event

log = logging.getLogger(__name__)

READ_BATCH = 500
BUFFER = 2 * READ_BATCH  # frames a stream may have waiting; a database read waits below half of it
READS_AT_ONCE = 8  # catch-up reads in flight (5,000 streams catching up after a broker outage take turns)
END = "end"
BEATS_PER_CHECK = 4  # every fourth heartbeat, streams behind their user's log catch up (a lost announce)
CHECK_BATCH = 1000  # users whose heads one read of that check fetches
HEARTBEAT = ": heartbeat\n\n"
TOO_SLOW = "the client read too slowly: resume after the last id"


def frame(kind: str, data: dict, seq: int | None = None) -> str:
    lines = [f"id: {seq}"] if seq is not None else []
    lines += [f"event: {kind}", f"data: {json.dumps(data, separators=(',', ':'))}"]
    return "\n".join(lines) + "\n\n"


class Stream:
    """One open stream: the frames it has yet to write, and the number of the last event it was given."""

    def __init__(self, user_id: str, last: int):
        self.user_id = user_id
        self.last = last
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()
        self.reading = True  # reading the database: live events wait in `held`
        self.held: list[dict] = []
        self.ended = False
        self.expiry: asyncio.TimerHandle | None = None
        self.roomy = asyncio.Event()
        self.roomy.set()

    def put(self, text: str) -> None:
        if self.ended:
            return
        if self.frames.qsize() >= BUFFER:
            self.end(frame(END, {"reason": TOO_SLOW}))
            return
        self.frames.put_nowait(text)
        if self.frames.qsize() >= BUFFER // 2:
            self.roomy.clear()

    async def room(self) -> None:
        """Until the client has taken its waiting frames down to half the buffer."""
        await self.roomy.wait()

    def end(self, last_frame: str | None = None) -> None:
        if self.ended:
            return
        if last_frame is not None:
            self.frames.put_nowait(last_frame)
        self.ended = True
        self.frames.put_nowait(None)
        self.roomy.set()  # a read waiting for room goes on, and stops

    async def next(self) -> str | None:
        """Every frame waiting to be written (waiting for one), to go out in one write; None when it is over."""
        text = await self.frames.get()
        if text is None:
            return None
        waiting = [text]
        while not self.frames.empty():
            more = self.frames.get_nowait()
            if more is None:
                self.frames.put_nowait(None)  # the end, for the next call
                break
            waiting.append(more)
        self.roomy.set()
        return "".join(waiting)

    def send(self, event: dict) -> None:
        self.put(frame(event["type"], {k: v for k, v in event.items() if k != "user_id"}, event["seq"]))
        self.last = event["seq"]


class StreamHub:
    def __init__(self, events: InboxLog, heartbeat: float, limit_per_user: int, limit: int):
        self.events = events
        self.heartbeat = heartbeat
        self.limit_per_user = limit_per_user
        self.limit = limit
        self.streams: dict[str, list[Stream]] = {}
        self.closed = False
        self._beating: asyncio.Task | None = None
        self._reading: set[asyncio.Task] = set()
        self._reads = asyncio.Semaphore(READS_AT_ONCE)

    def __len__(self) -> int:
        return sum(len(streams) for streams in self.streams.values())

    async def open(self, user_id: str, after: int | None, expires_at: float | None) -> Stream:
        """A stream of the user's events after number `after` (None: from now, with the counts first)."""
        if self.closed:
            raise Unavailable("The server is stopping: open the stream on another instance or in a moment")
        if len(self) >= self.limit:
            raise Unavailable("This server holds as many streams as it may (STREAM_LIMIT): try again later")
        self._start_beating()
        stream = Stream(user_id, after or 0)
        mine = self.streams.setdefault(user_id, [])
        mine.append(stream)
        while len(mine) > self.limit_per_user:
            self.close(mine[0], frame(END, {"reason": "a newer stream of this user took its place"}))
        if expires_at is not None:
            stream.expiry = asyncio.get_running_loop().call_later(
                max(expires_at - time.time(), 0), self._expire, stream
            )
        try:
            head = await self.events.settled_head(user_id)
            if after is None:
                self._start_at(stream, head, COUNTS)
            elif after > head["seq"]:  # a number this log never reached (another database): start over
                self._start_at(stream, head, RESET)
            await self._read(stream)
        except BaseException:
            self.close(stream)
            raise
        return stream

    def close(self, stream: Stream, last_frame: str | None = None) -> None:
        stream.end(last_frame)
        if stream.expiry is not None:
            stream.expiry.cancel()
        mine = self.streams.get(stream.user_id)
        if mine and stream in mine:
            mine.remove(stream)
            if not mine:
                del self.streams[stream.user_id]

    def deliver(self, event: dict) -> None:
        """A live event from the feed, to the streams of its user."""
        for stream in self.streams.get(event["user_id"], ()):
            if stream.reading:
                stream.held.append(event)
            elif event["seq"] == stream.last + 1:
                stream.send(event)
            elif event["seq"] > stream.last + 1:
                stream.held.append(event)
                self._read_later(stream)

    def catch_up(self) -> None:
        """The feed subscribed again: every stream reads what it may have missed meanwhile."""
        for stream in self._all():
            self._read_later(stream)

    def _read_later(self, stream: Stream) -> None:
        if stream.reading or stream.ended:
            return
        stream.reading = True
        task = asyncio.get_running_loop().create_task(self._read_safely(stream))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _read_safely(self, stream: Stream) -> None:
        try:
            await self._read(stream)
        except Exception:  # the database is away: the stream ends, and its client resumes where it was
            log.warning("inbox stream of %s could not read its events; ended", stream.user_id, exc_info=True)
            stream.end()

    async def _read(self, stream: Stream) -> None:
        """Send the events after the stream's last from the database, then the live ones held meanwhile."""
        stream.reading = True
        try:
            while not stream.ended:
                await stream.room()
                async with self._reads:
                    events = await self.events.since(stream.user_id, stream.last, READ_BATCH)
                if any(event["seq"] != stream.last + 1 + n for n, event in enumerate(events)):
                    await self._reset(stream)  # the events after the client's last are gone (INBOX_EVENTS_DAYS)
                    continue
                for event in events:
                    stream.send(public_event(event))
                if len(events) == READ_BATCH:
                    continue
                if self._send_held(stream):
                    return
                if not events:  # held events after a gap the database cannot fill: start over from them
                    stream.held = []
                    await self._reset(stream)
                # else a gap among the held ones: read again
        finally:
            stream.reading = False

    async def _reset(self, stream: Stream) -> None:
        """Tell the client to reload its list, and go on from the newest event."""
        self._start_at(stream, await self.events.head(stream.user_id), RESET)

    @staticmethod
    def _start_at(stream: Stream, head: dict, kind: str) -> None:
        """Go on from the head's number, telling the client with a `kind` frame of the counts there."""
        stream.put(frame(kind, {"seq": head["seq"], "counts": Tally.of(head).shown()}, head["seq"]))
        stream.last = head["seq"]

    @staticmethod
    def _send_held(stream: Stream) -> bool:
        """Send the held live events that follow on; False when one is missing before the rest."""
        held, stream.held = sorted(stream.held, key=lambda e: e["seq"]), []
        for position, event in enumerate(held):
            if event["seq"] <= stream.last:
                continue
            if event["seq"] > stream.last + 1:
                stream.held = held[position:]
                return False
            stream.send(event)
        return True

    def _expire(self, stream: Stream) -> None:
        self.close(stream, frame(END, {"reason": "the token has expired: open the stream again with a new one"}))

    def _start_beating(self) -> None:
        if self._beating is None or self._beating.done():
            self._beating = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.heartbeat)
            for stream in self._all():
                stream.put(HEARTBEAT)
            beats += 1
            if beats % BEATS_PER_CHECK == 0:
                try:
                    await self.check_behind()
                except Exception:  # the database is away: the next check looks again
                    log.warning("inbox streams: could not check for missed events", exc_info=True)

    async def check_behind(self) -> None:
        """Streams behind their user's last event (its announce was lost: the broker was away when it was
        written) read what they missed. One read of the heads of every user with a stream here."""
        users = list(self.streams)
        for start in range(0, len(users), CHECK_BATCH):
            last = await self.events.last_numbers(users[start : start + CHECK_BATCH])
            for user_id, seq in last.items():
                for stream in self.streams.get(user_id, ()):
                    if stream.last < seq:
                        self._read_later(stream)

    def _all(self) -> Iterable[Stream]:
        return [stream for streams in self.streams.values() for stream in streams]

    async def close_all(self) -> None:
        """Refuse new streams and end every one (the clients resume elsewhere, or here once it is back)."""
        self.closed = True
        for stream in self._all():
            self.close(stream, frame(END, {"reason": "the server is stopping: resume after the last id"}))
        if self._beating is not None:
            self._beating.cancel()
        reading = list(self._reading)
        for task in reading:
            task.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
