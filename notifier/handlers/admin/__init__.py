"""The HTML admin at /admin/, served by the same process from notifier/templates/admin/."""

from __future__ import annotations

from pathlib import Path

from ..base import Redirect, StaticFiles
from . import auth, dashboard, events, notifications, parked, people, schedules
from .base import Field, Pager

STATIC = Path(__file__).resolve().parent.parent.parent / "static"
UI_MODULES = {"Field": Field, "Pager": Pager}
ID = r"(?P<{}>[^/]+)"

routes = [
    (r"/admin", Redirect, {"url": "/admin/"}),
    (r"/admin/", dashboard.DashboardHandler),
    (r"/admin/login", auth.LoginHandler),
    (r"/admin/logout", auth.LogoutHandler),
    (r"/admin/static/(.*)", StaticFiles, {"path": str(STATIC)}),
    (r"/admin/notifications", notifications.NotificationsHandler),
    (r"/admin/notifications/new", notifications.NotificationNewHandler),
    (rf"/admin/notifications/{ID.format('notification_id')}", notifications.NotificationHandler),
    (rf"/admin/notifications/{ID.format('notification_id')}/recipients", notifications.NotificationRecipientsHandler),
    (rf"/admin/notifications/{ID.format('notification_id')}/cancel", notifications.NotificationCancelHandler),
    (r"/admin/schedules", schedules.SchedulesHandler),
    (r"/admin/schedules/new", schedules.ScheduleNewHandler),
    (rf"/admin/schedules/{ID.format('schedule_id')}", schedules.ScheduleHandler),
    (rf"/admin/schedules/{ID.format('schedule_id')}/toggle", schedules.ScheduleToggleHandler),
    (rf"/admin/schedules/{ID.format('schedule_id')}/delete", schedules.ScheduleDeleteHandler),
    (r"/admin/users", people.UsersHandler),
    (r"/admin/users/new", people.UserFormHandler),
    (rf"/admin/users/{ID.format('user_id')}", people.UserFormHandler),
    (rf"/admin/users/{ID.format('user_id')}/delete", people.UserDeleteHandler),
    (r"/admin/clients", people.ClientsHandler),
    (rf"/admin/clients/{ID.format('client_id')}/toggle", people.ClientToggleHandler),
    (rf"/admin/clients/{ID.format('client_id')}/reset", people.ClientResetHandler),
    (rf"/admin/clients/{ID.format('client_id')}/permissions", people.ClientPermissionsHandler),
    (rf"/admin/clients/{ID.format('client_id')}/delete", people.ClientDeleteHandler),
    (r"/admin/admins", people.AdminsHandler),
    (rf"/admin/admins/{ID.format('admin_id')}/toggle", people.AdminToggleHandler),
    (rf"/admin/admins/{ID.format('admin_id')}/password", people.AdminPasswordHandler),
    (r"/admin/parked", parked.ParkedHandler),
    (r"/admin/parked/redrive", parked.RedriveHandler),
    (r"/admin/event-endpoints", events.EventEndpointsHandler),
    (rf"/admin/event-endpoints/{ID.format('endpoint_id')}", events.EventEndpointHandler),
    (rf"/admin/event-endpoints/{ID.format('endpoint_id')}/replay", events.EventEndpointReplayHandler),
    (rf"/admin/event-endpoints/{ID.format('endpoint_id')}/toggle", events.EventEndpointToggleHandler),
]
