"""Walks the one access table: every documented operation x every kind of caller."""

from __future__ import annotations

import re

import pytest
from bson import ObjectId

from notifier.auth import ACCESS, PUBLIC, Role
from notifier.handlers import API_ROUTES

OPERATIONS = [(pattern, method.upper(), getattr(handler, method).endpoint)
              for pattern, handler in API_ROUTES
              for method in ("get", "post", "put", "patch", "delete")
              if hasattr(getattr(handler, method, None), "endpoint")]


def concrete(pattern: str) -> str:
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: "someone" if m.group(1) == "user_id" else str(ObjectId()),
                  pattern)


def expected(access: str, role: Role | None) -> str:
    if access == PUBLIC:
        return "let in"
    if role is None:
        return "401"
    return "let in" if role in ACCESS[access] else "403"


def test_every_operation_names_a_known_permission():
    assert OPERATIONS
    for _, _, endpoint in OPERATIONS:
        assert endpoint.access == PUBLIC or endpoint.access in ACCESS


@pytest.mark.gen_test(timeout=120)
async def test_access_matrix(api, admin, client_app, end_user):
    callers = {None: None, Role.ADMIN: admin.header, Role.CLIENT: client_app.header, Role.USER: end_user("ann")}
    mismatches = []
    for pattern, method, endpoint in OPERATIONS:
        for role, header in callers.items():
            body = {} if method in ("POST", "PUT", "PATCH") else None
            response = await api.call(method, concrete(pattern), body, auth=header)
            outcome = str(response.status) if response.status in (401, 403) else "let in"
            if outcome != expected(endpoint.access, role):
                mismatches.append((method, pattern, role, response.status))
            assert response.status < 500, (method, pattern, role, response.body)
    assert mismatches == []
