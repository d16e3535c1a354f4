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
        "quiet_hours": None,
    }
    updated = await api.put("/api/v1/me/preferences", {"unsubscribed_channels": ["email"]}, auth=end_user("dan"))
    assert updated.status == 200 and updated.body["unsubscribed_channels"] == ["email"]
    everything = await api.put("/api/v1/me/preferences", {"unsubscribed_all": True}, auth=end_user("dan"))
    assert everything.body == {  # only what was sent
        "unsubscribed_channels": ["email"],
        "unsubscribed_all": True,
        "quiet_hours": None,
    }
    assert (await api.get("/api/v1/users/dan", auth=admin.header)).body["unsubscribed_all"] is True
    # someone else's preferences are untouched: there is no way to name another user here
    assert (await api.get("/api/v1/me/preferences", auth=end_user("eve"))).body["unsubscribed_all"] is False


@pytest.mark.gen_test
async def test_preferences_reject_unknown_channels(api, end_user):
    response = await api.put("/api/v1/me/preferences", {"unsubscribed_channels": ["sms"]}, auth=end_user("dan"))
    assert response.status == 400
    assert "unsubscribed_channels" in response.body["errors"]


@pytest.mark.gen_test
async def test_quiet_hours_are_set_read_and_cleared_by_the_user(api, end_user, admin):
    window = {"start": "22:00", "end": "07:00:00", "days": ["fri", "mon", "mon"]}
    updated = await api.put("/api/v1/me/preferences", {"quiet_hours": window}, auth=end_user("dan"))
    assert updated.status == 200, updated.body
    stored = {"start": "22:00", "end": "07:00", "days": ["mon", "fri"]}
    assert updated.body["quiet_hours"] == stored
    assert (await api.get("/api/v1/me/preferences", auth=end_user("dan"))).body["quiet_hours"] == stored
    assert (await api.get("/api/v1/users/dan", auth=admin.header)).body["quiet_hours"] == stored
    assert (await api.put("/api/v1/me/preferences", {"unsubscribed_all": False}, auth=end_user("dan"))).body[
        "quiet_hours"
    ] == stored  # untouched by a write that does not send it
    cleared = await api.put("/api/v1/me/preferences", {"quiet_hours": None}, auth=end_user("dan"))
    assert cleared.body["quiet_hours"] is None


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "window",
    [
        {"start": "22:00", "end": "22:00"},
        {"start": "25:00", "end": "07:00"},
        {"start": "22:00"},
        {"start": "22:00", "end": "07:00", "days": ["someday"]},
        {"start": "22:00", "end": "07:00", "days": []},
        "22:00-07:00",
    ],
)
async def test_quiet_hours_that_name_no_window_are_refused(api, end_user, window):
    response = await api.put("/api/v1/me/preferences", {"quiet_hours": window}, auth=end_user("dan"))
    assert response.status == 400 and "quiet_hours" in response.body["errors"], response.body
    assert (await api.get("/api/v1/me/preferences", auth=end_user("dan"))).body["quiet_hours"] is None
