"""The order in which a consumer's batches go to the database (pure logic: no broker, no database)."""

from __future__ import annotations

import asyncio

import pytest

from notifier.queue import batch
from notifier.queue.batch import DatabaseTurns


async def _step(turns_step, log: list[str], name: str, release: asyncio.Event) -> None:
    async with turns_step():
        log.append(f"{name} in")
        await release.wait()
        log.append(f"{name} out")


@pytest.mark.gen_test(timeout=10)
async def test_regular_steps_go_one_at_a_time():
    turns, log = DatabaseTurns(), []
    first, second = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.ensure_future(_step(turns.regular, log, "a", first))]
    await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(_step(turns.regular, log, "b", second)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert log == ["a in"]
    second.set()
    first.set()
    await asyncio.gather(*tasks)
    assert log == ["a in", "a out", "b in", "b out"]


@pytest.mark.gen_test(timeout=10)
async def test_a_regular_step_waits_while_an_express_step_is_in_hand():
    turns, log = DatabaseTurns(), []
    express_done, regular_done = asyncio.Event(), asyncio.Event()
    regular_done.set()
    express = [asyncio.ensure_future(_step(turns.express, log, f"express{i}", express_done)) for i in range(2)]
    await asyncio.sleep(0)
    regular = asyncio.ensure_future(_step(turns.regular, log, "regular", regular_done))
    for _ in range(5):
        await asyncio.sleep(0)
    assert "regular in" not in log
    express_done.set()
    await asyncio.gather(*express, regular)
    assert log.index("regular in") > max(log.index("express0 out"), log.index("express1 out"))


@pytest.mark.gen_test(timeout=10)
async def test_a_steady_express_stream_delays_regular_steps_but_never_stops_them(monkeypatch):
    monkeypatch.setattr(batch, "EXPRESS_PRECEDENCE_SECONDS", 0.05)
    turns, log = DatabaseTurns(), []
    never, now = asyncio.Event(), asyncio.Event()
    now.set()
    express = asyncio.ensure_future(_step(turns.express, log, "express", never))
    await asyncio.sleep(0)
    await asyncio.wait_for(_step(turns.regular, log, "regular", now), 5)
    assert log == ["express in", "regular in", "regular out"]
    express.cancel()


@pytest.mark.gen_test(timeout=10)
async def test_dropping_a_read_ends_it_and_keeps_a_cancellation_of_the_batch():
    never = asyncio.Event()
    read = asyncio.ensure_future(never.wait())
    await batch._dropped(read)
    assert read.cancelled()

    stuck = asyncio.ensure_future(_shielded(never))
    await asyncio.sleep(0)
    dropping = asyncio.ensure_future(batch._dropped(stuck))
    await asyncio.sleep(0)
    dropping.cancel()  # the batch is cancelled while it waits for the read to end
    with pytest.raises(asyncio.CancelledError):
        await dropping
    never.set()
    await stuck


async def _shielded(event: asyncio.Event) -> None:
    """A read that takes a moment to end after its cancel."""
    try:
        await event.wait()
    except asyncio.CancelledError:
        await event.wait()
