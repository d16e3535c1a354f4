"""A stream's buffer (notifier/streams.py): a client that does not read is ended, not buffered for ever."""

from __future__ import annotations

import pytest

from notifier.streams import BUFFER, END, TOO_SLOW, Stream


@pytest.mark.gen_test
async def test_a_stream_whose_client_does_not_read_ends_with_why():
    stream = Stream("ann", 0)
    for n in range(BUFFER + 50):
        stream.send({"seq": n + 1, "type": "new", "user_id": "ann"})
    assert stream.ended
    waiting = await stream.next()  # everything waiting comes in one write
    assert waiting is not None
    frames = waiting.split("\n\n")[:-1]
    assert len(frames) == BUFFER + 1 and f"event: {END}" in frames[-1] and TOO_SLOW in frames[-1]
    assert await stream.next() is None


@pytest.mark.gen_test
async def test_room_waits_until_the_client_took_half():
    stream = Stream("ann", 0)
    for n in range(BUFFER // 2):
        stream.put(f"frame {n}")
    assert not stream.roomy.is_set()
    await stream.next()
    assert stream.roomy.is_set()
