"""This server's subscription to inbox events: a queue of its own on the inbox exchange (exclusive, gone with
the connection), so an event written by any consumer or server reaches the streams this server holds."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import aiormq
from aiormq.abc import DeliveredMessage

from .topology import Topology

log = logging.getLogger(__name__)


class InboxFeed:
    def __init__(self, topology: Topology, deliver: Callable[[dict], None], subscribed: Callable[[], None]):
        self.topology = topology
        self.deliver = deliver  # one event to the streams of its user
        self.subscribed = subscribed  # (re)subscribed: events announced meanwhile were missed, streams catch up

    async def subscribe(self, channel: aiormq.abc.AbstractChannel) -> None:
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        queue = declared.queue
        assert queue is not None  # the broker names a queue declared without one
        await channel.queue_bind(queue, exchange=self.topology.inbox_exchange, routing_key="")
        await channel.basic_consume(queue, self._on_message, no_ack=True)
        self.subscribed()

    async def _on_message(self, message: DeliveredMessage) -> None:
        try:
            events = json.loads(message.body)
            if not isinstance(events, list) or not all(_is_event(event) for event in events):
                raise ValueError("not a list of inbox events")
        except ValueError as exc:
            log.warning("inbox feed: a message that is not a list of events was dropped: %s", exc)
            return
        for event in events:
            self.deliver(event)


def _is_event(event: object) -> bool:
    return isinstance(event, dict) and isinstance(event.get("seq"), int) and isinstance(event.get("user_id"), str)
