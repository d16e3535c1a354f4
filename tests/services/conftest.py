from __future__ import annotations

import pytest

from ..http_peer import Peer
from ..queue.conftest import pipeline_settings, smtp, workers  # noqa: F401  (shared pipeline fixtures)


@pytest.fixture
def users_service(io_loop):
    server = Peer().start()
    yield server
    server.stop()


@pytest.fixture
def settings_overrides(pipeline_settings, users_service):
    return {
        **pipeline_settings,
        "users_service_url": f"{users_service.url}/users-info",
        "users_service_token": "Token abc",
        "retry_delays": (0.3,),
    }
