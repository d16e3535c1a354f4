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
    assert (await api.delete(f"/api/v1/clients/{client_app.id}", auth=admin.header, headers={"Content-Type": "application/json"})).status == 204
    assert (await api.get("/api/v1/notifications", auth=client_app.header)).status == 401
    assert (await api.get(f"/api/v1/clients/{client_app.id}", auth=admin.header)).status == 404


@pytest.mark.gen_test
async def test_clients_cannot_manage_clients(api, client_app):
    response = await api.post("/api/v1/clients", {"login": "sneaky", "name": "x"}, auth=client_app.header)
    assert response.status == 403
