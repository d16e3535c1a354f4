"""A SIGKILLed server leaves no consumer behind; a SIGTERMed one drains and exits 0."""

from __future__ import annotations

import signal

import pytest

from notifier.procs import pid_alive

from ..served import Served
from ..support import wait_until


@pytest.fixture
def served(tmp_path, amqp_url):
    server = Served(tmp_path, amqp_url, CONSUMERS_START="2", CONSUMERS_MIN="1", CONSUMERS_MAX="3")
    try:
        yield server.start()
    finally:
        server.cleanup()


def test_consumers_die_with_a_killed_server(served):
    wait_until(lambda: len(served.consumer_pids()) == 2, 30, "two consumers running")
    pids = served.consumer_pids()
    served.stop(signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), 30, f"orphan consumers still alive: {pids}")


def test_sigterm_stops_everything_cleanly(served):
    wait_until(lambda: len(served.consumer_pids()) == 2, 30, "two consumers running")
    pids = served.consumer_pids()
    assert served.stop(signal.SIGTERM) == 0
    assert not any(pid_alive(pid) for pid in pids)
    assert "stopped" in served.log_tail()
