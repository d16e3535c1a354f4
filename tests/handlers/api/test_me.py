"""End users reach only their own inbox, history and preferences."""

from __future__ import annotations

import pytest

NOTE = {"title": "Hi {{ name }}", "text": "For {{ user_id }}", "channel": "inbox"}


@pytest.mark.gen_test
async def test_inbox_lists_only_my_notifications_rendered_for_me(api, admin, end_user):
    await api.put("/api/v1/users/ann", {"display_name": "Ann"}, auth=admin.header)
    await api.post("/api/v1/notifications", {**NOTE, "recipients": ["ann", "bob"]}, auth=admin.header)
    await api.post("/api/v1/notifications", {**NOTE, "channel": "email", "recipients": ["bob"]}, auth=admin.header)
    mine = await api.get("/api/v1/me/notifications", auth=end_user("ann"))
    assert mine.status == 200
    assert [(i["title"], i["text"]) for i in mine.body["items"]] == [("Hi Ann", "For ann")]
    bobs = await api.get("/api/v1/me/notifications", auth="Bearer " + end_user("bob"))
    assert len(bobs.body["items"]) == 2
    only_email = await api.get("/api/v1/me/notifications?channel=email", auth=end_user("bob"))
    assert [i["channel"] for i in only_email.body["items"]] == ["email"]


@pytest.mark.gen_test
async def test_mark_read_is_mine_only(api, admin, end_user):
    await api.post("/api/v1/notifications", {**NOTE, "recipients": ["ann", "bob"]}, auth=admin.header)
    ann_item = (await api.get("/api/v1/me/notifications", auth=end_user("ann"))).body["items"][0]
    stolen = await api.post(f"/api/v1/me/notifications/{ann_item['id']}/read", auth=end_user("bob"))
    assert stolen.status == 404
    read = await api.post(f"/api/v1/me/notifications/{ann_item['id']}/read", auth=end_user("ann"))
    assert read.status == 204
    unread = await api.get("/api/v1/me/notifications?unread=true", auth=end_user("ann"))
    assert unread.body["items"] == []
    seen = await api.get("/api/v1/me/notifications?unread=false", auth=end_user("ann"))
    assert seen.body["items"][0]["read_at"] is not None
    assert (await api.get("/api/v1/me/notifications?unread=true", auth=end_user("bob"))).body["items"]


@pytest.mark.gen_test
async def test_preferences_default_then_unsubscribe(api, end_user, admin):
    assert (await api.get("/api/v1/me/preferences", auth=end_user("dan"))).body == {
        "unsubscribed_channels": [],
        "unsubscribed_all": False,
    }
    updated = await api.put("/api/v1/me/preferences", {"unsubscribed_channels": ["email"]}, auth=end_user("dan"))
    assert updated.status == 200 and updated.body["unsubscribed_channels"] == ["email"]
    everything = await api.put("/api/v1/me/preferences", {"unsubscribed_all": True}, auth=end_user("dan"))
    assert everything.body == {"unsubscribed_channels": ["email"], "unsubscribed_all": True}  # only what was sent
    assert (await api.get("/api/v1/users/dan", auth=admin.header)).body["unsubscribed_all"] is True
    # someone else's preferences are untouched: there is no way to name another user here
    assert (await api.get("/api/v1/me/preferences", auth=end_user("eve"))).body["unsubscribed_all"] is False


@pytest.mark.gen_test
async def test_preferences_reject_unknown_channels(api, end_user):
    response = await api.put("/api/v1/me/preferences", {"unsubscribed_channels": ["sms"]}, auth=end_user("dan"))
    assert response.status == 400
    assert "unsubscribed_channels" in response.body["errors"]
