"""Sessions and browsers: logout ends a session server-side, refresh tokens end with the session, a browser
cannot be made to send an API write cross-site, admin pages forbid framing and sniffing, weak admin
passwords are refused everywhere an admin password is set."""

from __future__ import annotations

import time

import jwt
import pytest

from notifier.errors import Invalid
from notifier.server import bootstrap_admin
from notifier.tokens import ADMIN_TOKEN_AUDIENCE, ADMIN_TOKEN_ISSUER, ADMIN_TOKEN_KID

from ..conftest import ADMIN_PASSWORD
from ..handlers.admin.conftest import Browser, text
from ..support import basic


@pytest.fixture
def settings_overrides(request):
    return getattr(request, "param", {})


def _browser(http_client, base_url) -> Browser:
    return Browser(base_url, http_client)


# --- logout ----------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_logout_makes_a_copied_session_cookie_worthless(http_client, base_url, admin):
    browser = _browser(http_client, base_url)
    assert (await browser.login()).status == 302
    stolen = dict(browser.cookies)
    assert (await browser.post("/admin/logout")).status == 302
    replay = _browser(http_client, base_url)
    replay.cookies = stolen
    response = await replay.get("/admin/")
    assert response.status == 302 and response.headers["Location"].startswith("/admin/login")


@pytest.mark.gen_test
async def test_logging_out_one_browser_keeps_the_others(http_client, base_url, admin):
    laptop, phone = _browser(http_client, base_url), _browser(http_client, base_url)
    assert (await laptop.login()).status == 302 and (await phone.login()).status == 302
    await laptop.post("/admin/logout")
    assert (await phone.get("/admin/")).status == 200
    assert (await laptop.get("/admin/")).status == 302


# --- token refresh ---------------------------------------------------------------------------------


def _admin_token(ctx, admin, **claims) -> str:
    now = int(time.time())
    payload = {
        "sub": admin.id,
        "name": "root",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "iss": ADMIN_TOKEN_ISSUER,
        "aud": ADMIN_TOKEN_AUDIENCE,
        "ver": 0,
        "jti": "x",
        **claims,
    }
    return jwt.encode(payload, ctx.keys.admin_jwt, algorithm="HS256", headers={"kid": ADMIN_TOKEN_KID})


@pytest.mark.gen_test
async def test_refresh_keeps_the_session_start(api, admin, ctx):
    token = (await api.post("/api/v1/auth/token", {"username": "root", "password": ADMIN_PASSWORD})).body
    started = jwt.decode(token["access_token"], options={"verify_signature": False})["auth_time"]
    refreshed = await api.post("/api/v1/auth/token/refresh", auth="Bearer " + token["access_token"])
    assert refreshed.status == 200
    assert jwt.decode(refreshed.body["access_token"], options={"verify_signature": False})["auth_time"] == started


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"admin_session_max": 3600}], indirect=True)
async def test_refresh_ends_after_the_session_lifetime(api, admin, ctx):
    old_session = _admin_token(ctx, admin, auth_time=int(time.time()) - 3600)
    assert (await api.get("/api/v1/clients", auth=f"Bearer {old_session}")).status == 200  # still valid itself
    refused = await api.post("/api/v1/auth/token/refresh", auth=f"Bearer {old_session}")
    assert refused.status == 401 and "with your password" in refused.body["message"]
    no_start = await api.post("/api/v1/auth/token/refresh", auth=f"Bearer {_admin_token(ctx, admin)}")
    assert no_start.status == 401
    near_end = _admin_token(ctx, admin, auth_time=int(time.time()) - 3500)
    last = await api.post("/api/v1/auth/token/refresh", auth=f"Bearer {near_end}")
    assert last.status == 200 and last.body["expires_in"] <= 100  # never past the session's end


# --- cross-site API writes -------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_bodyless_basic_write_without_json_or_custom_header_is_refused(api, admin):
    refused = await api.delete("/api/v1/users/ann", auth=admin.header)
    assert refused.status == 403
    assert "Content-Type" in refused.body["errors"] and "X-Requested-With" in refused.body["message"]
    form = await api.post(
        "/api/v1/notifications",
        auth=admin.header,
        raw=b"title=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status in (403, 415)
    as_json = await api.delete("/api/v1/users/ann", auth=admin.header, headers={"Content-Type": "application/json"})
    with_header = await api.delete("/api/v1/users/ann", auth=admin.header, headers={"X-Requested-With": "curl"})
    assert as_json.status != 403 and with_header.status != 403
    assert (await api.get("/api/v1/users", auth=admin.header)).status == 200  # reads are not writes


@pytest.mark.gen_test
async def test_credentials_a_browser_never_attaches_need_no_extra_header(api, admin, client_app):
    token = (await api.post("/api/v1/auth/token", {"username": "root", "password": ADMIN_PASSWORD})).body
    for header in (client_app.header, "Bearer " + token["access_token"]):
        response = await api.delete("/api/v1/schedules/000000000000000000000000", auth=header)
        assert response.status == 404, header


# --- admin page headers ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_admin_pages_forbid_framing_sniffing_and_leaking_referrers(http_client, base_url, admin):
    browser = _browser(http_client, base_url)
    pages = [await browser.get("/admin/login")]
    await browser.login()
    pages += [await browser.get("/admin/"), await browser.get("/admin/notifications/000000000000000000000000")]
    for page in pages:
        csp = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "'unsafe-inline'" not in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "same-origin"


def _assert_refuses_sniffing_and_framing(response, what: str) -> str:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, (what, csp)
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    assert response.headers.get("X-Frame-Options") == "DENY", what
    return csp


@pytest.mark.gen_test
async def test_every_kind_of_answer_refuses_sniffing_and_framing(api, http_client, base_url, ctx, admin):
    browser = _browser(http_client, base_url)
    token = ctx.links.unsubscribe_url("ann", "email").rpartition("/")[2]
    answers = {
        path: await browser.get(path)
        for path in (
            "/admin",
            "/admin/no-such-page",
            "/admin/static/admin.css",
            "/admin/static/missing.css",
            "/api/schema/",
            "/api/schema/redoc/",
            "/api/schema/redoc/assets/redoc.standalone.js",
            "/api/v1/users",
            "/no/such/path",
            "/unsubscribe/not-a-token",
            f"/unsubscribe/{token}",
        )
    }
    assert answers["/admin"].status == 301 and answers["/admin/no-such-page"].status == 404
    for path, response in answers.items():
        csp = _assert_refuses_sniffing_and_framing(response, path)
        if path.startswith("/unsubscribe/"):
            assert "script-src" not in csp, path
            assert response.headers["Referrer-Policy"] == "no-referrer", path
        elif path != "/api/schema/redoc/":
            assert "script-src" not in csp and "'unsafe-inline'" not in csp, path
    assert "script-src 'self'" in answers["/api/schema/redoc/"].headers["Content-Security-Policy"]


@pytest.mark.gen_test
async def test_admin_pages_use_no_inline_style_or_script(logged_in_pages):
    for html in logged_in_pages:
        assert "style=" not in html and "<script" not in html


@pytest.fixture
def logged_in_pages(io_loop, http_client, base_url, admin):
    async def fetch():
        browser = _browser(http_client, base_url)
        pages = [text(await browser.get("/admin/login"))]
        await browser.login()
        for path in (
            "/admin/",
            "/admin/notifications",
            "/admin/notifications/new",
            "/admin/schedules",
            "/admin/schedules/new",
            "/admin/users",
            "/admin/users/new",
            "/admin/clients",
            "/admin/admins",
            "/admin/parked",
        ):
            response = await browser.get(path)
            assert response.status == 200, path
            pages.append(text(response))
        return pages

    return io_loop.run_sync(fetch)


# --- admin password policy -------------------------------------------------------------------------

WEAK = [
    "password",
    "short-pass1",
    "passwordpassword",
    "qwertyuiop12",
    "123qweasdzxc",
    "aaaaaaaaaaaa",
    "rootroot1234",
    "Welcome2024!",
    "admin@123456",
    "notifier1234",
    "changemenow1",
    "Password1234!",
]


@pytest.mark.gen_test
@pytest.mark.parametrize("password", WEAK)
async def test_weak_admin_passwords_are_refused_on_create_and_change(ctx, admin, password):
    with pytest.raises(Invalid) as created:
        await ctx.admins.create("ops", password)
    assert "password" in created.value.errors
    with pytest.raises(Invalid):
        await ctx.admins.set_password(admin.id, password)


@pytest.mark.gen_test
async def test_the_admin_page_refuses_a_common_password(http_client, base_url, admin, ctx):
    browser = _browser(http_client, base_url)
    await browser.login()
    response = await browser.post("/admin/admins", {"username": "ops", "password": "passwordpassword"})
    assert response.status == 400 and "too common" in text(response)
    assert await ctx.store.admins.find_one({"username": "ops"}) is None


@pytest.mark.gen_test
async def test_a_weak_bootstrap_admin_password_stops_the_server(ctx):
    weak = ctx.settings.replace(notifier_admin_username="boot", notifier_admin_password="passwordpassword")
    ctx.settings = weak
    with pytest.raises(SystemExit, match="too common"):
        await bootstrap_admin(ctx)


@pytest.mark.gen_test
async def test_basic_auth_still_works_for_reads_and_json_writes(api, admin):
    assert (await api.get("/api/v1/clients", auth=basic("root", ADMIN_PASSWORD))).status == 200
    created = await api.post("/api/v1/clients", {"login": "crm", "name": "CRM"}, auth=admin.header)
    assert created.status == 201
