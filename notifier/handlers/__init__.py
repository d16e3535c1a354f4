"""HTTP handlers; each module keeps its routes beside its handlers and they are joined here."""

from __future__ import annotations

from . import admin, health, inbox_demo, metrics, unsubscribe
from .api import auth, clients, events, me, notifications, schedules, system, users

API_ROUTES = [
    *auth.routes,
    *notifications.routes,
    *schedules.routes,
    *users.routes,
    *clients.routes,
    *events.routes,
    *me.routes,
    *system.routes,
    *health.routes,
    *metrics.routes,
]
PAGE_ROUTES = [*unsubscribe.routes, *admin.routes, *inbox_demo.routes]
