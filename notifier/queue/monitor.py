"""How full every queue is, read from the broker with passive declares."""

from __future__ import annotations

import aiormq

from .connection import BrokerConnection
from .topology import Topology


async def queue_depths(broker: BrokerConnection, topology: Topology) -> list[dict]:
    """Messages waiting and consumers attached, per queue (delay tiers and parking included)."""
    names = [*topology.all_queues(), *(topology.pace_queue(ms) for ms in sorted(topology.pace_declared))]
    channel = await broker.new_channel()
    rows = []
    try:
        for name in names:
            try:
                declared = await channel.queue_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                channel = await broker.new_channel()  # an idle pace tier that expired; the channel closed
                continue
            rows.append(
                {
                    "queue": name[len(topology.prefix) :],
                    "messages": declared.message_count,
                    "consumers": declared.consumer_count,
                }
            )
    finally:
        if not channel.is_closed:
            await channel.close()
    return rows
