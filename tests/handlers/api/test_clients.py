"""Client applications: admins register them; the password is shown once and works as `<login> <password>`."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test
async def test_create_shows_password_once_and_it_authenticates(api, admin, ctx):
    created = await api.post("/api/v1/clients", {"login": "billing", "name": "Billing"}, auth=admin.header)
    assert created.status == 201
    assert created.headers["Location"] == f"/api/v1/clients/{created.body['id']}"
    password = created.body["password"]
    assert len(password) >= 24
    stored = await ctx.store.clients.find_one({"login": "billing"})
    assert password not in str(stored) and stored["password_hash"].startswith("scrypt$")
    fetched = await api.get(f"/api/v1/clients/{created.body['id']}", auth=admin.header)
    assert "password" not in fetched.body and fetched.body["created_by"] == "root"
    listed = await api.get("/api/v1/clients", auth=admin.header)
    assert [c["login"] for c in listed.body["items"]] == ["billing"]
    assert all("password" not in c for c in listed.body["items"])
    as_client = await api.get("/api/v1/notifications", auth=f"billing {password}")
    assert as_client.status == 200


@pytest.mark.gen_test
async def test_duplicate_login_is_409(api, admin, client_app):
    response = await api.post("/api/v1/clients", {"login": client_app.login, "name": "Again"}, auth=admin.header)
    assert response.status == 409
    assert response.body["errors"] == {"login": ["already exists"]}


@pytest.mark.gen_test
@pytest.mark.parametrize("login", ["ab", "Upper", "has space", "bearer", "basic", "-dash"])
async def test_bad_logins_are_400(api, admin, login):
    response = await api.post("/api/v1/clients", {"login": login, "name": "x"}, auth=admin.header)
    assert response.status == 400
    assert "login" in response.body["errors"]


@pytest.mark.gen_test
async def test_deleted_client_can_no_longer_authenticate(api, admin, client_app):
    assert (await api.get("/api/v1/notifications", auth=client_app.header)).status == 200
    deleted = await api.delete(
        f"/api/v1/clients/{client_app.id}", auth=admin.header, headers={"Content-Type": "application/json"}
    )
    assert deleted.status == 204
    assert (await api.get("/api/v1/notifications", auth=client_app.header)).status == 401
    assert (await api.get(f"/api/v1/clients/{client_app.id}", auth=admin.header)).status == 404


@pytest.mark.gen_test
async def test_clients_cannot_manage_clients(api, client_app):
    response = await api.post("/api/v1/clients", {"login": "sneaky", "name": "x"}, auth=client_app.header)
    assert response.status == 403


@pytest.mark.gen_test
async def test_permissions_are_none_by_default_granted_at_creation_and_shown(api, admin, client_app):
    assert (await api.get(f"/api/v1/clients/{client_app.id}", auth=admin.header)).body["permissions"] == []
    created = await api.post(
        "/api/v1/clients",
        {"login": "crm-sync", "name": "CRM sync", "permissions": ["contacts:write", "contacts:read", "contacts:read"]},
        auth=admin.header,
    )
    assert created.status == 201 and created.body["permissions"] == ["contacts:read", "contacts:write"]
    listed = await api.get("/api/v1/clients", auth=admin.header)
    assert {c["login"]: c["permissions"] for c in listed.body["items"]} == {
        "crm-sync": ["contacts:read", "contacts:write"],
        "shop": [],
    }
    password = created.body["password"]
    assert (await api.get("/api/v1/users", auth=f"crm-sync {password}")).status == 200


@pytest.mark.gen_test
async def test_an_admin_grants_and_revokes_permissions_audited(api, admin, client_app, ctx):
    path = f"/api/v1/clients/{client_app.id}/permissions"
    assert (await api.get("/api/v1/users", auth=client_app.header)).status == 403
    granted = await api.put(path, {"permissions": ["contacts:read"]}, auth=admin.header)
    assert granted.status == 200 and granted.body["permissions"] == ["contacts:read"]
    assert (await api.get("/api/v1/users", auth=client_app.header)).status == 200
    assert (await api.put(path, {"permissions": ["contacts:read"]}, auth=admin.header)).status == 200  # no change
    assert (await api.put(path, {"permissions": []}, auth=admin.header)).body["permissions"] == []
    assert (await api.get("/api/v1/users", auth=client_app.header)).status == 403
    entries = await ctx.store.audit.find({"action": "client_permissions"}).sort("at", 1).to_list(None)
    assert [(e["actor"], e["login"], e["before"], e["after"]) for e in entries] == [
        ("root", "shop", [], ["contacts:read"]),
        ("root", "shop", ["contacts:read"], []),
    ]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body",
    [
        {"permissions": ["contacts:admin"]},
        {"permissions": "contacts:read"},
        {"permissions": [1]},
        {},
        {"permissions": ["contacts:read"], "extra": 1},
    ],
)
async def test_unknown_permissions_are_400_naming_the_field(api, admin, client_app, ctx, body):
    response = await api.put(f"/api/v1/clients/{client_app.id}/permissions", body, auth=admin.header)
    assert response.status == 400
    assert response.body["errors"] and set(response.body["errors"]) <= {"permissions", "extra"}
    assert (await ctx.store.clients.find_one({"login": "shop"}))["permissions"] == []


@pytest.mark.gen_test
async def test_creating_with_an_unknown_permission_is_400_and_creates_nothing(api, admin, ctx):
    response = await api.post(
        "/api/v1/clients", {"login": "other", "name": "x", "permissions": ["everything"]}, auth=admin.header
    )
    assert response.status == 400 and "permissions" in response.body["errors"]
    assert await ctx.store.clients.count_documents({}) == 0


@pytest.mark.gen_test
async def test_only_admins_grant_permissions(api, admin, client_app, contacts_app, end_user):
    path = f"/api/v1/clients/{client_app.id}/permissions"
    for header in (client_app.header, contacts_app.header, end_user("ann")):
        assert (await api.put(path, {"permissions": ["contacts:write"]}, auth=header)).status == 403
    missing = await api.put(f"/api/v1/clients/{'0' * 24}/permissions", {"permissions": []}, auth=admin.header)
    assert missing.status == 404
