"""Malformed input at the HTTP edge: every case is a 400 naming what was wrong, never a 500."""

from __future__ import annotations

import pytest

DEEP = b'{"users": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "method, path, raw",
    [
        ("POST", "/api/v1/users/bulk", DEEP),
        ("POST", "/api/v1/notifications", b'{"title": ' + b"[" * 40 + b"]" * 40 + b"}"),
        ("POST", "/api/v1/notifications", b"[" * 200000),
        (
            "POST",
            "/api/v1/notifications",
            b'{"title": "\\ud800", "text": "t", "channel": "inbox", "recipients": ["a"]}',
        ),
        ("PUT", "/api/v1/users/ann", b'{"display_name": "\\udfff"}'),
        ("PUT", "/api/v1/users/ann", b'{"\\ud800": 1}'),
        ("POST", "/api/v1/schedules", b'{"interval_seconds": NaN}'),
        ("PUT", "/api/v1/users/ann", b'{"display_name": "\xff\xfe"}'),
    ],
)
async def test_malformed_json_is_400_naming_the_body(api, admin, ctx, method, path, raw):
    response = await api.call(method, path, raw=raw, auth=admin.header, headers={"Content-Type": "application/json"})
    assert response.status == 400, response.raw[:300]
    assert "body" in response.body["errors"]
    assert await ctx.store.notifications.count_documents({}) == 0
    assert await ctx.store.users.count_documents({}) == 0


@pytest.mark.gen_test
async def test_a_valid_pair_of_surrogates_is_just_an_emoji(api, admin):
    response = await api.call(
        "PUT",
        "/api/v1/users/ann",
        raw=b'{"display_name": "Ann \\ud83d\\ude00"}',
        auth=admin.header,
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 201 and response.body["display_name"] == "Ann \U0001f600"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "query, field",
    [
        ("created_after=0001-01-01T00:00:00%2B01:00", "created_after"),
        ("created_before=9999-12-31T23:59:59-12:00", "created_before"),
        ("created_after=1800-01-01", "created_after"),
        ("q=%ff%fe", "q"),
        ("channel=%c3%28", "channel"),
    ],
)
async def test_hostile_query_strings_are_400_naming_the_parameter(api, admin, query, field):
    response = await api.get(f"/api/v1/notifications?{query}", auth=admin.header)
    assert response.status == 400 and field in response.body["errors"], response.raw[:300]


@pytest.mark.gen_test
@pytest.mark.parametrize("zone", ["America", "Z" * 300, "../../etc/passwd", "Europe/../../etc/passwd"])
async def test_user_time_zones_come_from_the_zone_database(api, admin, ctx, zone):
    single = await api.put("/api/v1/users/ann", {"timezone": zone}, auth=admin.header)
    assert single.status == 400 and "timezone" in single.body["errors"]
    bulk = await api.post("/api/v1/users/bulk", {"users": [{"user_id": "bob", "timezone": zone}]}, auth=admin.header)
    assert bulk.status == 400
    assert await ctx.store.users.count_documents({}) == 0


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic \xff\xfe"},
        {"Authorization": "shop \xe9\xff"},
        {"Authorization": "Bearer \xff.\xfe.\xfd"},
        {"X-Request-Id": "\xff" * 100},
        {"Content-Type": "application/json; charset=\xff"},
    ],
)
async def test_header_bytes_that_are_not_utf8_are_refused_not_a_500(api, headers):
    response = await api.call(
        "POST", "/api/v1/notifications", raw=b"{}", headers={"Content-Type": "application/json", **headers}
    )
    assert 400 <= response.status < 500, response.raw[:300]


@pytest.mark.gen_test
async def test_an_idempotency_key_that_is_not_utf8_is_refused_or_kept_as_sent(api, admin, ctx):
    body = {"title": "t", "text": "x", "channel": "inbox", "recipients": ["a"]}
    response = await api.post(
        "/api/v1/notifications", body, auth=admin.header, headers={"Idempotency-Key": "k\xff\xfe"}
    )
    assert response.status in (201, 400), response.raw[:300]
