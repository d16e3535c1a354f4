"""One long-lived AMQP connection per process, re-established with backoff whenever it drops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiormq

from ..errors import Unavailable

log = logging.getLogger(__name__)

OnChannel = Callable[[aiormq.abc.AbstractChannel], Awaitable[None]]


class BrokerConnection:
    """Keeps a connection and one confirming channel open; `on_channel` runs on every new channel
    (declare the topology, start consuming). Callers ask for the channel and get Unavailable while
    the broker is away, never a hang."""

    def __init__(
        self, url: str, name: str, on_channel: OnChannel | None = None, max_backoff: float = 10.0, prefetch: int = 0
    ):
        self.url = url
        self.name = name
        self.on_channel = on_channel
        self.max_backoff = max_backoff
        self.prefetch = prefetch
        self.connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.last_error: str = "not connected yet"
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"amqp:{self.name}")

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def channel(self, timeout: float = 0.0) -> aiormq.abc.AbstractChannel:
        if not self._ready.is_set() and not (timeout and await self.wait_connected(timeout)):
            raise Unavailable(f"RabbitMQ is unavailable: {self.last_error}")
        assert self._channel is not None  # set before the connection is announced ready
        return self._channel

    async def check(self) -> None:
        if not self.connected:
            raise ConnectionError(self.last_error)

    async def new_channel(self, **kwargs) -> aiormq.abc.AbstractChannel:
        """Another channel on the same connection (a consumer's express channel, say)."""
        if not self.connected or self.connection is None:
            raise Unavailable(f"RabbitMQ is unavailable: {self.last_error}")
        return await self.connection.channel(**kwargs)

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            connection = None
            try:
                connection = await aiormq.connect(self.url, client_properties={"connection_name": self.name})
                channel = await connection.channel(publisher_confirms=True)
                if self.prefetch:
                    await channel.basic_qos(prefetch_count=self.prefetch)
                self.connection, self._channel = connection, channel
                if self.on_channel is not None:
                    await self.on_channel(channel)
                self.connects += 1
                self._ready.set()
                backoff = 0.2
                log.info("%s: connected to RabbitMQ", self.name)
                _, watching = await asyncio.wait(
                    [connection.closing, channel.closing], return_when=asyncio.FIRST_COMPLETED
                )
                for observer in watching:
                    observer.cancel()
                self.last_error = "connection closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure means the same thing here: reconnect later
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._ready.clear()
                if connection is not None and not connection.is_closed:
                    await self._close_quietly(connection)
            if self._stopping:
                break
            log.warning("%s: RabbitMQ unavailable (%s); retrying in %.1fs", self.name, self.last_error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    @staticmethod
    async def _close_quietly(connection) -> None:
        try:
            await asyncio.wait_for(connection.close(), 5)
        except Exception:  # closing a broken connection may fail in many ways; it is gone either way
            pass

    async def close(self) -> None:
        self._stopping = True
        connection = self.connection
        if connection is not None and not connection.is_closed:
            await self._close_quietly(connection)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
