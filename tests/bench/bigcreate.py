"""Big creates: the time to answer the create of N recipients, and to the last `sent`, with the deliveries
stored in the background (202, the default past INLINE_RECIPIENTS) beside the same create stored inline
before the answer (INLINE_RECIPIENTS=N, the behaviour before background fan-out), in the same run."""

from __future__ import annotations

from . import fanout
from .harness import Infra


def run(infra: Infra, n: int, consumers: int, inline_reference: bool = True) -> dict:
    measured = {"background": fanout.run(infra, n, consumers)}
    if inline_reference:
        measured["inline"] = fanout.run(infra, n, consumers, INLINE_RECIPIENTS=str(n))
    return measured
