"""A consumer's lane: the messages of one queue, grouped into batches, a bounded number in hand at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiormq.abc import DeliveredMessage

log = logging.getLogger(__name__)


class Lane:
    """Messages of one queue, grouped into batches; at most `parallel` batches in hand at once."""

    def __init__(self, name: str, batch: int, wait: float, parallel: int,
                 process: Callable[[list[DeliveredMessage]], Coroutine[Any, Any, None]]):
        self.name = name
        self.batch = batch
        self.wait = wait
        self.process = process
        self.buffer: list[DeliveredMessage] = []
        self.arrived = asyncio.Event()
        self.slots = asyncio.Semaphore(parallel)
        self.in_hand: set[asyncio.Task] = set()
        self.open = True

    async def add(self, message: DeliveredMessage) -> None:
        """The consume callback of the lane's queue."""
        self.buffer.append(message)
        self.arrived.set()

    async def run(self) -> None:
        while self.open:
            await self.arrived.wait()
            if self.wait and len(self.buffer) < self.batch:
                await asyncio.sleep(self.wait)
            await self.slots.acquire()
            if not self.open:
                self.slots.release()
                break
            batch, self.buffer = self.buffer[:self.batch], self.buffer[self.batch:]
            if not self.buffer:
                self.arrived.clear()
            if not batch:
                self.slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self.process(batch))
            self.in_hand.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.in_hand.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("%s batch failed", self.name, exc_info=task.exception())

    async def drain(self, timeout: float) -> list[DeliveredMessage]:
        """Stop taking batches, wait for the ones in hand; returns the messages never started."""
        self.open = False
        self.arrived.set()
        if self.in_hand:
            await asyncio.wait(list(self.in_hand), timeout=timeout)
        left, self.buffer = self.buffer, []
        return left
