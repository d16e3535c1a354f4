"""POST /api/v1/auth/token and every credential form with its failures, over HTTP."""

from __future__ import annotations

import base64
import time

import jwt
import pytest

from ...conftest import USER_SECRET
from ...support import basic, user_token


async def _token(api, username="root", password="admin-password-1"):
    return await api.post("/api/v1/auth/token", {"username": username, "password": password})


@pytest.mark.gen_test
async def test_admin_token_works_as_bearer_and_refreshes(api, admin):
    response = await _token(api)
    assert response.status == 200
    assert response.body["token_type"] == "Bearer" and response.body["expires_in"] == 900
    bearer = "Bearer " + response.body["access_token"]
    assert (await api.get("/api/v1/clients", auth=bearer)).status == 200
    refreshed = await api.post("/api/v1/auth/token/refresh", auth=bearer)
    assert refreshed.status == 200 and refreshed.body["access_token"] != response.body["access_token"]


@pytest.mark.gen_test
@pytest.mark.parametrize("username, password", [("root", "wrong-password"), ("nobody", "admin-password-1")])
async def test_token_with_bad_credentials_is_401(api, admin, username, password):
    response = await _token(api, username, password)
    assert response.status == 401
    assert response.body["message"] == "Invalid username or password"


@pytest.mark.gen_test
async def test_password_change_revokes_issued_tokens(api, admin, ctx):
    bearer = "Bearer " + (await _token(api)).body["access_token"]
    await ctx.admins.set_password(admin.id, "another-password")
    response = await api.get("/api/v1/clients", auth=bearer)
    assert response.status == 401 and "revoked" in response.body["message"]


@pytest.mark.gen_test
async def test_admin_basic_auth(api, admin):
    assert (await api.get("/api/v1/clients", auth=admin.header)).status == 200
    assert (await api.get("/api/v1/clients", auth=basic("root", "nope"))).status == 401


@pytest.mark.gen_test
async def test_client_forms(api, client_app):
    assert (await api.get("/api/v1/notifications", auth=client_app.header)).status == 200
    assert (await api.get("/api/v1/notifications", auth=basic(client_app.login, client_app.password))).status == 200
    wrong = await api.get("/api/v1/notifications", auth=f"{client_app.login} wrong")
    assert wrong.status == 401
    unknown = await api.get("/api/v1/notifications", auth=f"ghost {client_app.password}")
    assert unknown.status == 401


def _forged(alg_none: bool = False, **claims) -> str:
    payload = {"sub": "ann", "exp": int(time.time()) + 600, **claims}
    if alg_none:
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        body = base64.urlsafe_b64encode(jwt.utils.force_bytes(jwt.api_jws.json.dumps(payload))).rstrip(b"=")
        return f"{header}.{body.decode()}."
    return jwt.encode(payload, USER_SECRET, algorithm="HS256")


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "make_token, fragment",
    [
        (lambda: user_token(USER_SECRET, "ann", ttl=-120), "expired"),
        (lambda: user_token(USER_SECRET, "ann", nbf=int(time.time()) + 600), "not yet valid"),
        (lambda: _forged(alg_none=True), "'none' is not accepted"),
        (lambda: user_token("some-other-secret-of-another-issuer", "ann"), "Signature verification failed"),
        (lambda: user_token(USER_SECRET, "ann")[:-4] + "AAAA", "Signature verification failed"),
        (lambda: user_token(USER_SECRET * 2, "ann", algorithm="HS512"), "'HS512' is not accepted"),
        (lambda: jwt.encode({"sub": "ann"}, USER_SECRET, algorithm="HS256"), 'missing the "exp" claim'),
        (lambda: jwt.encode({"exp": int(time.time()) + 60}, USER_SECRET, algorithm="HS256"), "no 'sub' claim"),
        (lambda: "not.a.jwt", "Invalid token"),
    ],
)
async def test_end_user_token_failures_are_401(api, make_token, fragment):
    response = await api.get("/api/v1/me/notifications", auth=make_token())
    assert response.status == 401
    assert fragment in response.body["message"]
    assert "Bearer" in response.headers["WWW-Authenticate"]


@pytest.mark.gen_test
async def test_end_user_token_in_both_forms(api, end_user):
    token = end_user("ann")
    assert (await api.get("/api/v1/me/preferences", auth=token)).status == 200
    assert (await api.get("/api/v1/me/preferences", auth=f"Bearer {token}")).status == 200


@pytest.mark.gen_test
async def test_missing_or_malformed_header_is_401_with_challenge(api):
    for header in (None, "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(), "Bearer"):
        response = await api.get("/api/v1/notifications", auth=header)
        assert response.status == 401, header
        assert response.headers["WWW-Authenticate"] == 'Basic realm="notifier", Bearer realm="notifier"'
