"""The admin under hostile requests: odd methods, crafted `next` targets and bad form values give 4xx pages."""

from __future__ import annotations

import pytest

from .conftest import field_errors

SCHEDULE = {
    "title": "Standup",
    "text": "t",
    "channel": "inbox",
    "user_ids": "a",
    "kind": "cron",
    "cron": "30 9 * * 1-5",
    "timezone": "Europe/Berlin",
    "enabled": "on",
}


@pytest.mark.gen_test
async def test_methods_a_page_does_not_have_are_405(logged_in, client_app):
    assert (await logged_in.request("OPTIONS", "/admin/schedules/new")).status == 405
    assert (await logged_in.get(f"/admin/clients/{client_app.id}/reset")).status == 405


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "target",
    [
        "/admin/\r\nSet-Cookie: x=1",
        "/admin/%0d%0aX: y",
        "//evil.example/admin",
        "/admin//evil.example",
        "https://evil.example/admin",
        "/admin\\@evil.example",
        "/administrator",
        "/admin/\x00",
    ],
)
async def test_login_goes_only_to_admin_paths_of_this_site(browser, admin, target):
    await browser.get("/admin/login")
    response = await browser.post("/admin/login", {"username": "root", "password": admin.password, "next": target})
    assert response.status == 302 and response.headers["Location"] == "/admin/"


@pytest.mark.gen_test
async def test_login_keeps_a_sane_next(browser, admin):
    await browser.get("/admin/login")
    response = await browser.post(
        "/admin/login",
        {"username": "root", "password": admin.password, "next": "/admin/notifications?channel=email&q=a%20b"},
    )
    assert response.headers["Location"] == "/admin/notifications?channel=email&q=a%20b"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "changes, field",
    [
        ({"timezone": "America"}, "timezone"),
        ({"timezone": "x" * 300}, "timezone"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),
        ({"kind": "interval", "interval_seconds": "1.5"}, "interval_seconds"),
        ({"kind": "interval", "interval_seconds": "10"}, "interval_seconds"),
        ({"start_at": "9999-12-31T23:59:59-12:00"}, "start_at"),
        ({"misfire_grace_seconds": "²"}, "misfire_grace_seconds"),
    ],
)
async def test_bad_schedule_forms_are_400_pages(logged_in, ctx, changes, field):
    response = await logged_in.post("/admin/schedules/new", {**SCHEDULE, **changes})
    assert response.status == 400 and field_errors(response, field), field_errors(response, field)
    assert await ctx.store.notifications.count_documents({}) == 0
    created = await logged_in.post("/admin/schedules/new", SCHEDULE)
    edited = await logged_in.post(created.headers["Location"], {**SCHEDULE, **changes})
    assert edited.status == 400 and field_errors(edited, field)


@pytest.mark.gen_test
async def test_a_disabled_schedule_page_says_its_preview_is_not_firing(logged_in):
    created = await logged_in.post("/admin/schedules/new", {**SCHEDULE, "enabled": ""})
    page = (await logged_in.get(created.headers["Location"])).raw.decode()
    assert 'id="preview-note">disabled: it fires at these times only once enabled' in page


@pytest.mark.gen_test
async def test_bad_filters_are_400_or_shown_never_500(logged_in):
    for path in (
        "/admin/notifications?created_after=0001-01-01",
        "/admin/notifications?created_before=99999-01-01",
        "/admin/notifications?q=%ff",
        "/admin/schedules?enabled=maybe",
        "/admin/users?cursor=%00",
        "/admin/parked?notification_id=%ff",
        "/admin/schedules?notification_id=x",
    ):
        response = await logged_in.get(path)
        assert response.status < 500, (path, response.status)


@pytest.mark.gen_test
async def test_a_schedule_that_never_fires_can_be_kept_disabled_and_shown(logged_in):
    created = await logged_in.post("/admin/schedules/new", {**SCHEDULE, "cron": "0 0 31 2 *", "enabled": ""})
    assert created.status == 302
    page = await logged_in.get(created.headers["Location"])
    assert page.status == 200 and "None (disabled, or past its end)." in page.raw.decode()
    enabled = await logged_in.post(created.headers["Location"], {**SCHEDULE, "cron": "0 0 31 2 *"})
    assert enabled.status == 400 and field_errors(enabled, "cron")
