"""Opt-outs belong to the user: a client application's contact writes change only the fields they send
and can never re-subscribe anyone; only the user (their token, the signed link) and an admin (audited) can."""

from __future__ import annotations

import asyncio

import pytest
from bson import ObjectId

from ..queue.conftest import pipeline_settings, settled, smtp, workers  # noqa: F401  (shared pipeline fixtures)

CONTACTS = {"email": "alice@example.com", "display_name": "Alice", "telegram_chat_id": "12345"}


@pytest.fixture
def settings_overrides(pipeline_settings):  # noqa: F811
    return pipeline_settings


async def opted_out(api, end_user, user_id="alice", **preferences):
    body = preferences or {"unsubscribed_channels": ["email"]}
    response = await api.put("/api/v1/me/preferences", body, auth=end_user(user_id))
    assert response.status == 200
    return response.body


@pytest.mark.gen_test
async def test_a_contact_put_without_preference_fields_keeps_the_opt_out(api, ctx, contacts_app, end_user):
    await api.put("/api/v1/users/alice", CONTACTS, auth=contacts_app.header)
    await opted_out(api, end_user)
    changed = await api.put("/api/v1/users/alice", {"email": "alice@new.example.com"}, auth=contacts_app.header)
    assert changed.status == 200, changed.body
    assert changed.body["unsubscribed_channels"] == ["email"]
    assert changed.body["email"] == "alice@new.example.com"
    assert changed.body["display_name"] == "Alice" and changed.body["telegram_chat_id"] == "12345"
    assert await ctx.users.preferences("alice") == {"unsubscribed_channels": ["email"], "unsubscribed_all": False}


@pytest.mark.gen_test
async def test_a_field_sent_as_null_clears_it_and_absent_ones_stay(api, ctx, contacts_app):
    await api.put("/api/v1/users/alice", CONTACTS, auth=contacts_app.header)
    cleared = await api.put("/api/v1/users/alice", {"telegram_chat_id": None}, auth=contacts_app.header)
    assert cleared.body["telegram_chat_id"] is None
    assert cleared.body["email"] == "alice@example.com" and cleared.body["display_name"] == "Alice"


@pytest.mark.gen_test
async def test_a_bulk_upsert_keeps_opt_outs(api, ctx, contacts_app, end_user):
    await opted_out(api, end_user, "alice", unsubscribed_all=True)
    await opted_out(api, end_user, "bob", unsubscribed_channels=["telegram"])
    response = await api.post(
        "/api/v1/users/bulk",
        {
            "users": [
                {"user_id": "alice", "email": "a@example.com"},
                {"user_id": "bob", "email": "b@example.com"},
                {"user_id": "carol", "email": "c@example.com"},
            ]
        },
        auth=contacts_app.header,
    )
    assert response.status == 200 and response.body == {"created": 1, "updated": 2}
    assert await ctx.users.preferences("alice") == {"unsubscribed_channels": [], "unsubscribed_all": True}
    assert await ctx.users.preferences("bob") == {"unsubscribed_channels": ["telegram"], "unsubscribed_all": False}
    assert (await ctx.users.get("alice"))["email"] == "a@example.com"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "sent",
    [
        {"unsubscribed_channels": []},
        {"unsubscribed_all": False},
        {"unsubscribed_channels": ["telegram"], "email": "alice@example.com"},
    ],
)
async def test_a_client_cannot_set_preferences(api, ctx, contacts_app, end_user, sent):
    await opted_out(api, end_user, unsubscribed_channels=["email"], unsubscribed_all=True)
    response = await api.put("/api/v1/users/alice", sent, auth=contacts_app.header)
    assert response.status == 403
    assert set(response.body["errors"]) == {k for k in sent if k.startswith("unsubscribed")}
    bulk = await api.post(
        "/api/v1/users/bulk", {"users": [{"user_id": "bob"}, {"user_id": "alice", **sent}]}, auth=contacts_app.header
    )
    assert bulk.status == 403
    assert set(bulk.body["errors"]["users"]["1"]) == {k for k in sent if k.startswith("unsubscribed")}
    assert await ctx.users.preferences("alice") == {"unsubscribed_channels": ["email"], "unsubscribed_all": True}
    assert await ctx.store.users.count_documents({"user_id": "bob"}) == 0  # nothing half-written


@pytest.mark.gen_test
async def test_a_client_delete_forgets_contacts_but_not_the_opt_out(api, ctx, contacts_app, end_user):
    await api.put("/api/v1/users/alice", CONTACTS, auth=contacts_app.header)
    await opted_out(api, end_user)
    assert (await api.delete("/api/v1/users/alice", auth=contacts_app.header)).status == 204
    again = await api.put("/api/v1/users/alice", {"email": "alice@example.com"}, auth=contacts_app.header)
    assert again.body["unsubscribed_channels"] == ["email"]
    assert again.body["display_name"] is None


@pytest.mark.gen_test
async def test_an_admin_may_change_preferences_and_each_change_is_audited(api, ctx, admin, end_user):
    await opted_out(api, end_user)
    changed = await api.put("/api/v1/users/alice", {"unsubscribed_channels": []}, auth=admin.header)
    assert changed.status == 200 and changed.body["unsubscribed_channels"] == []
    await api.post(
        "/api/v1/users/bulk",
        {"users": [{"user_id": "alice", "unsubscribed_all": True}, {"user_id": "bob", "email": "bob@example.com"}]},
        auth=admin.header,
    )
    await api.put("/api/v1/users/alice", {"email": "alice@example.com"}, auth=admin.header)  # no preference change
    entries = await ctx.store.audit.find({"action": "user_preferences"}).sort("at", 1).to_list(None)
    assert [(e["actor"], e["user_id"], e["before"], e["after"]) for e in entries] == [
        (
            "root",
            "alice",
            {"unsubscribed_channels": ["email"], "unsubscribed_all": False},
            {"unsubscribed_channels": [], "unsubscribed_all": False},
        ),
        (
            "root",
            "alice",
            {"unsubscribed_channels": [], "unsubscribed_all": False},
            {"unsubscribed_channels": [], "unsubscribed_all": True},
        ),
    ]
    # The user can still opt back in or out themselves.
    assert (await opted_out(api, end_user, unsubscribed_all=False))["unsubscribed_all"] is False


@pytest.mark.gen_test(timeout=90)
async def test_after_a_client_rewrites_the_contact_the_opted_out_user_gets_no_email(
    api, ctx, contacts_app, end_user, smtp, workers
):
    await api.put("/api/v1/users/alice", CONTACTS, auth=contacts_app.header)
    await api.put("/api/v1/users/bob", {"email": "bob@example.com"}, auth=contacts_app.header)
    await opted_out(api, end_user)
    await api.put(
        "/api/v1/users/alice", {"email": "alice@example.com", "display_name": "Alice B."}, auth=contacts_app.header
    )
    await api.post("/api/v1/users/bulk", {"users": [{"user_id": "alice", "locale": "en"}]}, auth=contacts_app.header)
    created = await api.post(
        "/api/v1/notifications",
        {"title": "Sale", "text": "Everything must go", "channel": "email", "recipients": ["alice", "bob"]},
        auth=contacts_app.header,
    )
    assert await settled(ctx, ObjectId(created.body["id"]), 2) == {"sent": 1, "skipped": 1}
    assert [r.recipient for r in smtp.received] == ["bob@example.com"]
    skipped = await ctx.store.deliveries.find_one({"user_id": "alice"})
    assert skipped["reason"] == "unsubscribed"


@pytest.mark.gen_test
async def test_the_users_own_preference_writes_change_only_what_they_send(api, end_user):
    await opted_out(api, end_user, unsubscribed_all=True)
    after = await opted_out(api, end_user, unsubscribed_channels=["telegram"])
    assert after == {"unsubscribed_all": True, "unsubscribed_channels": ["telegram"], "quiet_hours": None}
    unchanged = await api.put("/api/v1/me/preferences", {}, auth=end_user("alice"))
    assert unchanged.status == 200 and unchanged.body == after


@pytest.mark.gen_test
async def test_unsubscribe_links_clicked_at_once_all_hold(ctx):
    channels = ["email", "telegram", "webhook", "inbox"]
    await asyncio.gather(*(ctx.users.unsubscribe("bob", channel) for channel in channels * 3))
    assert sorted((await ctx.users.preferences("bob"))["unsubscribed_channels"]) == sorted(channels)
