"""The access table on its own (no HTTP; every route against it is tests/handlers/test_access.py)."""

from __future__ import annotations

from notifier.access import PUBLIC, Principal, Role, allowed, refusal

ADMIN = Principal(Role.ADMIN, "a1", "root")
SHOP = Principal(Role.CLIENT, "c1", "shop")
GRANTED_SHOP = Principal(Role.CLIENT, "c2", "crm", frozenset({"contacts:read"}))
ANN = Principal(Role.USER, "ann", "ann")


def test_public_lets_anyone_in_and_the_rest_need_a_caller():
    assert allowed(PUBLIC, None)
    assert not allowed("notifications:read", None)


def test_roles_hold_what_the_table_gives_them():
    assert allowed("clients:manage", ADMIN) and not allowed("clients:manage", SHOP)
    assert allowed("me", ANN) and not allowed("me", ADMIN)


def test_a_grantable_permission_needs_a_grant_for_a_client_only():
    assert allowed("contacts:read", ADMIN)
    assert not allowed("contacts:read", SHOP)
    assert allowed("contacts:read", GRANTED_SHOP) and not allowed("contacts:write", GRANTED_SHOP)


def test_refusal_tells_a_missing_grant_from_a_wrong_role():
    assert "has not been granted 'contacts:read'" in refusal("contacts:read", SHOP)
    assert refusal("clients:manage", ANN) == "A user may not do this"
