"""The one visibility rule as a pure function: filters narrow it, never widen or replace it."""

from __future__ import annotations

from notifier.access import Principal, Role
from notifier.services.visibility import visible_to

ADMIN = Principal(Role.ADMIN, "a1", "root")
SHOP = Principal(Role.CLIENT, "c1", "shop")


def test_admins_see_what_they_filter():
    assert visible_to(ADMIN, {"author.id": "c2"}) == {"author.id": "c2"}


def test_a_client_filter_is_anded_with_the_rule():
    assert visible_to(SHOP, {"channel": "email"}) == {"channel": "email", "author.kind": "client", "author.id": "c1"}
    assert visible_to(SHOP, {"author.id": "c2"}) == {
        "$and": [{"author.id": "c2"}, {"author.kind": "client", "author.id": "c1"}]
    }


def test_the_callers_query_is_not_changed():
    query = {"channel": "email"}
    visible_to(SHOP, query)
    assert query == {"channel": "email"}
