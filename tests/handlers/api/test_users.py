"""PUT/GET/DELETE /api/v1/users/{id}, the list and the bulk upsert."""

from __future__ import annotations

import pytest

ANN = {
    "email": "ann@example.com",
    "telegram_chat_id": "12345",
    "webhook_url": "https://hooks.example.com/ann",
    "display_name": "Ann",
    "timezone": "Europe/Berlin",
    "locale": "de-DE",
    "unsubscribed_channels": ["telegram"],
    "unsubscribed_all": False,
}


CONTACTS = {k: v for k, v in ANN.items() if not k.startswith("unsubscribed")}


@pytest.mark.gen_test
async def test_put_creates_then_changes_only_the_fields_sent(api, contacts_app):
    created = await api.put("/api/v1/users/ann-1", CONTACTS, auth=contacts_app.header)
    assert created.status == 201
    assert created.body["user_id"] == "ann-1"
    assert {k: created.body[k] for k in CONTACTS} == CONTACTS
    assert created.body["unsubscribed_channels"] == [] and created.body["unsubscribed_all"] is False
    changed = await api.put(
        "/api/v1/users/ann-1", {"email": "new@example.com", "display_name": None}, auth=contacts_app.header
    )
    assert changed.status == 200
    assert changed.body["email"] == "new@example.com"
    assert changed.body["display_name"] is None
    assert changed.body["telegram_chat_id"] == "12345" and changed.body["locale"] == "de-DE"
    assert changed.body["created_at"] == created.body["created_at"]
    fetched = await api.get("/api/v1/users/ann-1", auth=contacts_app.header)
    assert fetched.body == changed.body


@pytest.mark.gen_test
async def test_an_admin_sets_contacts_and_preferences(api, admin):
    created = await api.put("/api/v1/users/ann-1", ANN, auth=admin.header)
    assert created.status == 201
    assert {k: created.body[k] for k in ANN} == ANN
    minimal = await api.put("/api/v1/users/bob", {}, auth=admin.header)
    assert minimal.status == 201 and minimal.body["email"] is None and minimal.body["unsubscribed_channels"] == []


@pytest.mark.gen_test
async def test_delete_then_404(api, admin):
    await api.put("/api/v1/users/bob", {"email": "bob@example.com"}, auth=admin.header)
    json_body = {"Content-Type": "application/json"}
    assert (await api.delete("/api/v1/users/bob", auth=admin.header, headers=json_body)).status == 204
    assert (await api.get("/api/v1/users/bob", auth=admin.header)).status == 404
    assert (await api.delete("/api/v1/users/bob", auth=admin.header, headers=json_body)).status == 404


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"telegram_chat_id": "chat"}, "telegram_chat_id"),
        ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"locale": "English!"}, "locale"),
        ({"unsubscribed_channels": ["sms"]}, "unsubscribed_channels"),
        ({"user_id": "other"}, "user_id"),
        ({"phone": "+1"}, "phone"),
    ],
)
async def test_invalid_user_fields_are_400(api, admin, body, field):
    response = await api.put("/api/v1/users/carol", body, auth=admin.header)
    assert response.status == 400
    assert field in response.body["errors"]


@pytest.mark.gen_test
async def test_invalid_user_id_in_path_is_400(api, admin):
    response = await api.put("/api/v1/users/-bad", {}, auth=admin.header)
    assert response.status == 400
    assert "user_id" in response.body["errors"]


@pytest.mark.gen_test
async def test_bulk_upsert_and_list_in_pages(api, admin):
    users = [{"user_id": f"user-{i:02d}", "email": f"u{i}@example.com"} for i in range(5)]
    first = await api.post("/api/v1/users/bulk", {"users": users}, auth=admin.header)
    assert first.status == 200 and first.body == {"created": 5, "updated": 0}
    users[0]["display_name"] = "Zero"
    again = await api.post("/api/v1/users/bulk", {"users": users[:2]}, auth=admin.header)
    assert again.body == {"created": 0, "updated": 2}
    page = await api.get("/api/v1/users?limit=3", auth=admin.header)
    rest = await api.get(f"/api/v1/users?limit=3&cursor={page.body['next_cursor']}", auth=admin.header)
    listed = page.body["items"] + rest.body["items"]
    assert [u["user_id"] for u in listed] == [f"user-{i:02d}" for i in range(5)]
    assert listed[0]["display_name"] == "Zero"
    assert rest.body["next_cursor"] is None


@pytest.mark.gen_test
async def test_bulk_errors_name_the_item_and_field(api, admin):
    response = await api.post(
        "/api/v1/users/bulk", {"users": [{"user_id": "ok"}, {"user_id": "x", "email": "@"}]}, auth=admin.header
    )
    assert response.status == 400
    assert response.body["errors"] == {"users": {"1": {"email": ["Not a valid email address."]}}}
    empty = await api.post("/api/v1/users/bulk", {"users": []}, auth=admin.header)
    assert empty.status == 400 and "users" in empty.body["errors"]
