"""Admin login, session cookie, logout, XSRF, and the failed-login lockout."""

from __future__ import annotations

import pytest

from .conftest import text


@pytest.mark.gen_test
async def test_pages_redirect_to_login_when_not_logged_in(browser):
    for path in ("/admin/", "/admin/notifications", "/admin/parked", "/admin/users/new"):
        response = await browser.get(path)
        assert response.status == 302
        assert response.headers["Location"].startswith("/admin/login?next=")
    posted = await browser.post("/admin/notifications/new", {"title": "x"})
    assert posted.status == 302 and posted.headers["Location"] == "/admin/login"


@pytest.mark.gen_test
async def test_login_sets_a_strict_httponly_session_and_logout_ends_it(browser, admin):
    wrong = await browser.login(password="not-the-password")
    assert wrong.status == 401 and "Invalid username or password" in text(wrong)
    assert 'value="root"' in text(wrong)  # what was typed is kept
    ok = await browser.login()
    assert ok.status == 302
    session_cookie = next(h for h in browser.set_cookie_headers if h.startswith("notifier_admin="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie and "Path=/admin" in session_cookie
    dashboard = await browser.get("/admin/")
    assert dashboard.status == 200 and "Dashboard" in text(dashboard) and "Log out root" in text(dashboard)
    out = await browser.post("/admin/logout")
    assert out.status == 302
    assert (await browser.get("/admin/")).status == 302


@pytest.mark.gen_test
async def test_forms_without_the_xsrf_token_are_refused(logged_in):
    response = await logged_in.post("/admin/notifications/new", {"title": "x"}, xsrf=False)
    assert response.status == 403
    forged = await logged_in.post(
        "/admin/clients", [("login", "evil"), ("name", "x"), ("_xsrf", "2|forged|0|x")], xsrf=False
    )
    assert forged.status == 403


@pytest.mark.gen_test
async def test_a_form_that_reads_no_fields_still_checks_the_xsrf_token(logged_in):
    # Admin forms are streamed, so the token is checked after the body arrives, before any page's submit().
    assert (await logged_in.post("/admin/logout", xsrf=False)).status == 403
    assert (await logged_in.get("/admin/")).status == 200  # still logged in
    assert (await logged_in.post("/admin/logout")).status == 302


@pytest.mark.gen_test
async def test_repeated_failed_logins_lock_the_account_out(browser, admin):
    for _ in range(5):
        assert (await browser.login(password="guess")).status == 401
    locked = await browser.login()  # even the right password waits now
    assert locked.status == 429
    assert "Too many failed logins for this account" in text(locked)
    assert int(locked.headers["Retry-After"]) > 0


@pytest.mark.gen_test
async def test_the_api_token_endpoint_shares_the_lockout(api, admin):
    for _ in range(5):
        await api.post("/api/v1/auth/token", {"username": "root", "password": "guess"})
    response = await api.post("/api/v1/auth/token", {"username": "root", "password": "admin-password-1"})
    assert response.status == 429 and "Too many failed logins" in response.body["message"]


@pytest.mark.gen_test
async def test_a_password_change_logs_other_sessions_out(logged_in, ctx, admin):
    await ctx.admins.set_password(admin.id, "a-brand-new-password")
    assert (await logged_in.get("/admin/")).status == 302
