"""Who may do what: the roles of callers and the one table of their permissions.

`ACCESS` is the one table of which role may do what; handlers name a permission, never a role. A permission
in `GRANTABLE` is held by a client application only when an admin granted it to that application.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    ADMIN = "admin"
    CLIENT = "client"
    USER = "user"


@dataclass(frozen=True)
class Principal:
    role: Role
    id: str
    name: str
    permissions: frozenset[str] = frozenset()  # what an admin granted a client application (GRANTABLE)
    expires_at: float | None = field(
        default=None, compare=False
    )  # an end user's: when their token expires (an open stream ends then)

    def as_author(self) -> dict:
        return {"kind": self.role.value, "id": self.id, "name": self.name}


PUBLIC = "public"
ADMIN, CLIENT, USER = Role.ADMIN, Role.CLIENT, Role.USER

ACCESS: dict[str, frozenset[Role]] = {
    "notifications:write": frozenset({ADMIN, CLIENT}),
    "notifications:read": frozenset({ADMIN, CLIENT}),
    "contacts:write": frozenset({ADMIN, CLIENT}),
    "contacts:read": frozenset({ADMIN, CLIENT}),
    "preferences:write": frozenset({ADMIN}),  # someone else's opt-outs (the user has "me" for their own)
    "schedules:write": frozenset({ADMIN, CLIENT}),
    "schedules:read": frozenset({ADMIN, CLIENT}),
    "events:read": frozenset({ADMIN, CLIENT}),  # status events of one's own notifications (admins: all)
    "events:manage": frozenset({ADMIN, CLIENT}),  # one's own event endpoints (admins: every one)
    "clients:manage": frozenset({ADMIN}),
    "system:read": frozenset({ADMIN}),
    "inbox:repair": frozenset({ADMIN}),  # recount a user's inbox counts
    "auth:refresh": frozenset({ADMIN}),
    "me": frozenset({USER}),
}


# The contacts directory is platform-wide: a client application reads or writes it only once granted.
GRANTABLE = ("contacts:read", "contacts:write")


def allowed(permission: str, principal: Principal | None) -> bool:
    if permission == PUBLIC:
        return True
    if principal is None or principal.role not in ACCESS[permission]:
        return False
    return principal.role is not CLIENT or permission not in GRANTABLE or permission in principal.permissions


def refusal(permission: str, principal: Principal) -> str:
    """Why `allowed` said no to a known caller."""
    if principal.role in ACCESS[permission]:
        return f"This client application has not been granted {permission!r}; an admin can grant it"
    return f"A {principal.role.value} may not do this"
