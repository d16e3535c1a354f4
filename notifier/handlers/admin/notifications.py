"""Notifications: list with search and filters, detail with counts and deliveries, create, add recipients,
cancel."""

from __future__ import annotations

import csv
import io

from ...domain import STATUSES
from ...errors import Invalid
from ...schemas import DeliveryListQuerySchema, NotificationCreateSchema, NotificationListQuerySchema, RecipientsSchema
from ...services.fanout import in_progress
from .base import CHANNEL_OPTIONS, AdminHandler, blank_to_none, checkbox, invalid_errors, split_ids


def recipients_from(handler: AdminHandler, values: dict) -> list[str]:
    """Ids pasted in the text area plus those of an uploaded CSV file (a `user_id` column, else the first)."""
    ids = split_ids(values.get("recipients", ""))
    for upload in handler.request.files.get("recipients_csv", []):
        try:
            text = upload["body"].decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Invalid.field("recipients_csv", "is not a UTF-8 CSV file") from None
        rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
        column = 0
        if rows and "user_id" in [cell.strip().lower() for cell in rows[0]]:
            column = [cell.strip().lower() for cell in rows[0]].index("user_id")
            rows = rows[1:]
        ids += [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
    return ids


def variables_from(text: str) -> dict:
    """`name=value` lines."""
    variables = {}
    for line in text.splitlines():
        if line.strip():
            name, separator, value = line.partition("=")
            if not separator:
                raise Invalid.field("variables", f"{line.strip()!r} is not name=value")
            variables[name.strip()] = value.strip()
    return variables


class NotificationsHandler(AdminHandler):
    async def get(self):
        filters = self.query()
        query = blank_to_none(
            filters, "channel", "is_express", "author", "q", "created_after", "created_before", "cursor"
        )
        query = {
            k: (f"{v}T00:00:00" if k.startswith("created_") and len(v) == 10 else v)
            for k, v in query.items()
            if v is not None
        }
        try:
            page = await self.ctx.notifications.page(
                self.current_user, self.validate(NotificationListQuerySchema, query)
            )
            errors = {}
        except Invalid as exc:
            page, errors = None, invalid_errors(exc)
        self.page(
            "notifications.html",
            page=page,
            filters=filters,
            errors=errors,
            channel_options=(("", "any channel"), *CHANNEL_OPTIONS),
        )


class NotificationNewHandler(AdminHandler):
    takes_upload = True

    def get(self):
        self.page(
            "notification_new.html",
            values={"channel": "email"},
            errors={},
            message=None,
            channel_options=CHANNEL_OPTIONS,
        )

    async def submit(self):
        values = self.form()
        try:
            data = {
                "title": values.get("title", ""),
                "text": values.get("text", ""),
                "channel": values.get("channel", ""),
                "is_express": checkbox(values, "is_express"),
                "content_id": values.get("content_id") or None,
                "variables": variables_from(values.get("variables", "")),
                "recipients": recipients_from(self, values),
            }
            notification, _ = await self.ctx.notifications.create(
                self.current_user, self.validate(NotificationCreateSchema, data)
            )
        except Invalid as exc:
            self.page(
                "notification_new.html",
                status=400,
                values=values,
                errors=invalid_errors(exc),
                message=exc.message,
                channel_options=CHANNEL_OPTIONS,
            )
            return
        later = " Their deliveries are being stored in the background." if in_progress(notification) else ""
        self.after(
            f"/admin/notifications/{notification['_id']}",
            f"Notification created for {notification['recipient_count']} recipients.{later}",
        )


class NotificationHandler(AdminHandler):
    async def get(self, notification_id):
        notification = await self.ctx.notifications.get(self.current_user, notification_id)
        filters = self.query()
        query = {k: v for k, v in blank_to_none(filters, "status", "user_id", "cursor").items() if v is not None}
        try:
            deliveries = await self.ctx.notifications.deliveries(
                self.current_user, notification_id, self.validate(DeliveryListQuerySchema, query)
            )
            errors = {}
        except Invalid as exc:
            deliveries, errors = None, invalid_errors(exc)
        self.page(
            "notification.html",
            notification=notification,
            deliveries=deliveries,
            filters=filters,
            errors=errors,
            status_options=(("", "any status"), *((s, s) for s in STATUSES)),
            values={},
            add_errors={},
        )


class NotificationRecipientsHandler(AdminHandler):
    takes_upload = True

    async def submit(self, notification_id):
        values = self.form()
        try:
            data = self.validate(RecipientsSchema, {"recipients": recipients_from(self, values)})
            added, present = await self.ctx.notifications.add_recipients(
                self.current_user, notification_id, data["recipients"]
            )
        except Invalid as exc:
            notification = await self.ctx.notifications.get(self.current_user, notification_id)
            deliveries = await self.ctx.notifications.deliveries(self.current_user, notification_id, {"limit": 50})
            self.page(
                "notification.html",
                status=400,
                notification=notification,
                deliveries=deliveries,
                filters={},
                errors={},
                status_options=(("", "any status"), *((s, s) for s in STATUSES)),
                values=values,
                add_errors=invalid_errors(exc),
            )
            return
        self.after(
            f"/admin/notifications/{notification_id}", f"{added} recipients added; {present} were already there."
        )


class NotificationCancelHandler(AdminHandler):
    async def submit(self, notification_id):
        done = await self.ctx.notifications.cancel(self.admin, notification_id)
        self.after(
            f"/admin/notifications/{notification_id}",
            f"Cancelled: {done['cancelled']} deliveries will not be sent; {done['already_sent']} were already sent, "
            f"{done['in_flight']} were being sent (they are not tried again).",
        )
