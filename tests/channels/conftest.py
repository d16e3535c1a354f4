from __future__ import annotations

import pytest

from ..queue.conftest import pipeline_settings, smtp, workers  # noqa: F401  (shared pipeline fixtures)


@pytest.fixture
def settings_overrides(pipeline_settings, peer):
    # The peer stands in for a webhook receiver on loopback, which only an operator's allow-list admits.
    return {
        **pipeline_settings,
        "telegram_api_url": peer.url,
        "telegram_bot_token": "123:secret-token",
        "outbound_allow": ("127.0.0.1",),
    }
