"""The auth matrix: every documented operation x {none, admin, client, client granted every permission, end user,
another end user, expired, forged} gives the status the one access table promises."""

from __future__ import annotations

import re
import time

import jwt
import pytest
from bson import ObjectId

from notifier.access import ACCESS, GRANTABLE, PUBLIC, Role
from notifier.handlers import API_ROUTES

from ..conftest import USER_SECRET
from ..sse import SseClient
from ..support import Response

OPERATIONS = [
    (pattern, method.upper(), getattr(handler, method).endpoint)
    for pattern, handler in API_ROUTES
    for method in ("get", "post", "put", "patch", "delete")
    if hasattr(getattr(handler, method, None), "endpoint")
]


def concrete(pattern: str, ids: dict) -> str:
    """The pattern's parameters filled: from `ids`, the first of a choice of words, else a new ObjectId."""

    def value(match: re.Match) -> str:
        name, body = match.groups()
        if re.fullmatch(r"[\w-]+(\|[\w-]+)+", body):
            return body.split("|")[0]
        return ids.get(name, str(ObjectId()))

    return re.sub(r"\(\?P<(\w+)>([^)]*)\)", value, pattern)


def expected(access: str, caller: str) -> str:
    if access == PUBLIC:
        return "let in"
    if caller in ("none", "expired", "forged"):
        return "401"
    role = {
        "admin": Role.ADMIN,
        "client": Role.CLIENT,
        "granted client": Role.CLIENT,
        "user": Role.USER,
        "other user": Role.USER,
    }[caller]
    if role not in ACCESS[access]:
        return "403"
    if caller == "client" and access in GRANTABLE:
        return "403"  # a client application holds these only once an admin granted them
    return "let in"


def test_every_operation_names_a_known_permission():
    assert OPERATIONS
    for _, _, endpoint in OPERATIONS:
        assert endpoint.access == PUBLIC or endpoint.access in ACCESS
    assert set(GRANTABLE) <= set(ACCESS)
    assert {endpoint.access for _, _, endpoint in OPERATIONS} >= set(GRANTABLE)


@pytest.mark.gen_test(timeout=120)
async def test_auth_matrix(api, admin, client_app, contacts_app, end_user):
    created = await api.post(
        "/api/v1/notifications",
        {"title": "t", "text": "x", "channel": "inbox", "recipients": ["ann"]},
        auth=admin.header,
    )
    inbox = await api.get("/api/v1/me/notifications", auth=end_user("ann"))
    ids = {"notification_id": created.body["id"], "delivery_id": inbox.body["items"][0]["id"], "user_id": "ann"}
    expired = jwt.encode({"sub": "ann", "exp": int(time.time()) - 3600}, USER_SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "ann", "exp": int(time.time()) + 600}, "x" * 40, algorithm="HS256")
    callers = {
        "none": None,
        "admin": admin.header,
        "client": client_app.header,
        "granted client": contacts_app.header,
        "user": end_user("ann"),
        "other user": end_user("bob"),
        "expired": expired,
        "forged": forged,
    }
    mismatches = []
    for pattern, method, endpoint in OPERATIONS:
        for caller, header in callers.items():
            body = {} if method in ("POST", "PUT", "PATCH") else None
            if endpoint.produces:  # an event stream let in never ends: its status is the answer
                opened = await SseClient.open(
                    api.base_url, concrete(pattern, ids), {"Authorization": header} if header else {}
                )
                opened.close()
                response = Response(opened.status, None, {}, opened.body)
            else:
                response = await api.call(
                    method, concrete(pattern, ids), body, auth=header, headers={"X-Requested-With": "tests"}
                )  # what a Basic write must carry
            outcome = str(response.status) if response.status in (401, 403) else "let in"
            if outcome != expected(endpoint.access, caller):
                mismatches.append((method, pattern, caller, response.status))
            assert response.status < 500, (method, pattern, caller, response.body)
    assert mismatches == []


@pytest.mark.gen_test
async def test_another_end_user_cannot_touch_my_notifications(api, admin, end_user):
    await api.post(
        "/api/v1/notifications",
        {"title": "t", "text": "x", "channel": "inbox", "recipients": ["ann"]},
        auth=admin.header,
    )
    mine = (await api.get("/api/v1/me/notifications", auth=end_user("ann"))).body["items"][0]
    assert (await api.post(f"/api/v1/me/notifications/{mine['id']}/read", auth=end_user("bob"))).status == 404
    assert (await api.get("/api/v1/me/notifications", auth=end_user("bob"))).body["items"] == []
