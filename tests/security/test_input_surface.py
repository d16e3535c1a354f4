"""Hostile values the API and the admin forms must refuse with a 400 naming the field (never a 500, never
stored): malformed webhook URLs, control characters in variables, client names and admin usernames, and
cron syntax the README does not document."""

from __future__ import annotations

import pytest

from notifier.errors import Invalid
from notifier.recurrence import check_cron

from ..handlers.admin.conftest import browser, field_errors, logged_in  # noqa: F401  (the admin form fixtures)

MALFORMED_URLS = [
    "http://[::1",
    "http://a]/",
    "http://[::1]x/",
    "http://a:99999/",
    "http://a:0/",
    "http://a:x/",
    "https://[v1.x]/",
]


@pytest.mark.gen_test
@pytest.mark.parametrize("url", MALFORMED_URLS)
async def test_a_malformed_webhook_url_is_400(api, admin, url):
    put = await api.put("/api/v1/users/w1", {"webhook_url": url}, auth=admin.header)
    assert put.status == 400 and "webhook_url" in put.body["errors"], put.body
    bulk = await api.post("/api/v1/users/bulk", {"users": [{"user_id": "w1", "webhook_url": url}]}, auth=admin.header)
    assert bulk.status == 400 and "webhook_url" in str(bulk.body["errors"]), bulk.body
    assert (await api.get("/api/v1/users/w1", auth=admin.header)).status == 404


@pytest.mark.gen_test
async def test_a_well_formed_webhook_url_is_still_accepted(api, admin):
    for url in ("https://hooks.example.com/x?y=1", "http://[2001:db8::1]:8080/h", "http://localhost:9/"):
        response = await api.put("/api/v1/users/w1", {"webhook_url": url}, auth=admin.header)
        assert response.status in (200, 201), (url, response.body)


@pytest.mark.gen_test
@pytest.mark.parametrize("url", ["http://[::1", "http://a:99999/"])
async def test_a_malformed_webhook_url_in_the_admin_form_is_400(logged_in, ctx, url):
    response = await logged_in.post("/admin/users/new", {"user_id": "w1", "webhook_url": url})
    assert response.status == 400 and field_errors(response, "webhook_url"), response.raw[:300]
    assert await ctx.store.users.count_documents({}) == 0


@pytest.mark.gen_test
@pytest.mark.parametrize("value", ["x\r\nBcc: evil@example.com", "x\ny", "x\x00", "x\u2028y", "x\ty"])
async def test_control_characters_in_variables_are_400(api, admin, value):
    note = {"title": "{{ v }}", "text": "Body", "channel": "email", "variables": {"v": value}}
    response = await api.post("/api/v1/notifications", {**note, "recipients": ["eve"]}, auth=admin.header)
    assert response.status == 400 and "v" in response.body["errors"].get("variables", {}), response.body
    schedule = await api.post(
        "/api/v1/schedules", {"notification": note, "user_ids": ["eve"], "interval_seconds": 60}, auth=admin.header
    )
    assert schedule.status == 400 and "variables" in schedule.body["errors"]["notification"], schedule.body


@pytest.mark.gen_test
async def test_a_client_name_with_control_characters_is_400(api, admin):
    response = await api.post("/api/v1/clients", {"login": "crm", "name": "x\r\ny"}, auth=admin.header)
    assert response.status == 400 and "name" in response.body["errors"], response.body


@pytest.mark.gen_test
@pytest.mark.parametrize("username", ["adm2\r\nx", "adm2\x00", "adm 2", "adm2\u2028", "-adm"])
async def test_an_admin_username_outside_the_rule_is_refused(ctx, logged_in, username):
    with pytest.raises(Invalid) as refused:
        await ctx.admins.create(username, "a-long-enough-password")
    assert "username" in refused.value.errors
    # Tornado drops \x00-\x08 and \x0e-\x1f from form values and the form strips spaces: "adm2\x00" arrives as
    # "adm2" and is a fine name; what survives as typed must be refused.
    if username.strip() == username and "\x00" not in username:
        form = await logged_in.post("/admin/admins", {"username": username, "password": "a-long-enough-password"})
        assert form.status == 400
    assert await ctx.store.admins.count_documents({"username": username}) == 0


@pytest.mark.parametrize("expression", ["0 0 1W * *", "0 0 LW * *", "0 0 15w * *"])
def test_cron_syntax_the_readme_does_not_document_is_refused(expression):
    assert check_cron(expression)


@pytest.mark.parametrize("expression", ["0 0 L * *", "0 9 * * 1#2", "0 9 * * mon-fri", "*/5 * * jan *"])
def test_documented_cron_syntax_is_accepted(expression):
    assert check_cron(expression) is None


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/api/v1/users/bulk", {"users": [{"user_id": "ann\n", "email": "ann@example.com"}]}, "users"),
        ("/api/v1/users/ann", {"telegram_chat_id": "12345\n"}, "telegram_chat_id"),
        ("/api/v1/users/ann", {"locale": "en\n"}, "locale"),
        ("/api/v1/clients", {"login": "crm\n", "name": "CRM"}, "login"),
        (
            "/api/v1/notifications",
            {"title": "t", "text": "x", "channel": "inbox", "recipients": ["ann\n"]},
            "recipients",
        ),
        (
            "/api/v1/notifications",
            {"title": "t", "text": "x", "channel": "inbox", "recipients": ["ann"], "variables": {"v\n": "x"}},
            "variables",
        ),
    ],
    ids=["user id", "telegram chat id", "locale", "client login", "recipient", "variable name"],
)
async def test_a_trailing_newline_never_passes_a_pattern(api, admin, path, body, field):
    """Python's `$` matches before a final newline: every pattern must hold for the whole value."""
    method = api.put if path == "/api/v1/users/ann" else api.post
    response = await method(path, body, auth=admin.header)
    assert response.status == 400 and field in response.body["errors"], response.body
