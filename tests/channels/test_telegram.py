"""Telegram: the Bot API's sendMessage, against a local stand-in for api.telegram.org."""

from __future__ import annotations

import pytest
from bson import ObjectId

from ..queue.conftest import settled
from ..support import TEST_ADMIN


@pytest.mark.gen_test(timeout=60)
async def test_send_message_to_the_chat(api, admin, ctx, peer, workers):
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": "t1", "telegram_chat_id": "-100123", "display_name": "Tess"}])
    response = await api.post(
        "/api/v1/notifications",
        {"title": "Hi {{ name }}", "text": "Alarm!", "channel": "telegram", "recipients": ["t1"], "is_express": True},
        auth=admin.header,
    )
    assert await settled(ctx, ObjectId(response.body["id"]), 1) == {"sent": 1}
    [request] = peer.requests
    assert request.path == "/bot123:secret-token/sendMessage"
    assert request.json["chat_id"] == "-100123"
    assert request.json["text"].startswith("Hi Tess\n\nAlarm!")
    assert "/unsubscribe/" in request.json["text"]


@pytest.mark.gen_test(timeout=60)
async def test_rate_limit_retries_and_blocked_bot_fails(api, admin, ctx, peer, workers):
    def answer(request):
        if request.json["chat_id"] == "111":
            return 403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
        limited = [r for r in peer.requests if r.json["chat_id"] == "222"]
        if len(limited) == 1:
            return 429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 1}}
        return 200, {"ok": True}

    peer.answers = [answer]
    await ctx.users.bulk_upsert(
        TEST_ADMIN, [{"user_id": "blocked", "telegram_chat_id": "111"}, {"user_id": "busy", "telegram_chat_id": "222"}]
    )
    response = await api.post(
        "/api/v1/notifications",
        {"title": "x", "text": "y", "channel": "telegram", "recipients": ["blocked", "busy"]},
        auth=admin.header,
    )
    assert await settled(ctx, ObjectId(response.body["id"]), 2) == {"sent": 1, "failed": 1}
    blocked = await ctx.store.deliveries.find_one({"user_id": "blocked"})
    assert blocked["reason"] == "rejected" and "403" in blocked["last_error"]
    busy = await ctx.store.deliveries.find_one({"user_id": "busy"})
    assert busy["attempts"] == 2
