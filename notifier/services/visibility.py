"""The one visibility rule: which notifications and schedules a caller may see or change.

Admins see every one; a client application only those it created (`author`). Deliveries and schedule runs
have no author of their own: they are reached only through a notification or schedule that passed this rule.
Every query and write on those collections goes through `visible_to`, applied after the caller's filters, so
a filter can narrow what the rule allows but never widen or replace it.
"""

from __future__ import annotations

from ..access import Principal, Role


def _owned_by(principal: Principal) -> dict:
    if principal.role is Role.ADMIN:
        return {}
    return {"author.kind": principal.role.value, "author.id": principal.id}


def visible_to(principal: Principal, query: dict) -> dict:
    """`query` restricted to the documents `principal` may see."""
    rule = _owned_by(principal)
    if not rule:
        return dict(query)
    if rule.keys() & query.keys():  # a filter on the same field (e.g. `author`) must hold as well
        return {"$and": [query, rule]}
    return {**query, **rule}
