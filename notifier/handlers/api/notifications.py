"""Notifications: create with recipients, read with counts, list deliveries, add recipients, cancel."""

from __future__ import annotations

from ...errors import Invalid
from ...schemas import (
    CancelByKeySchema,
    CancelledByKeySchema,
    CancelledSchema,
    CancelSchema,
    DeliveryListQuerySchema,
    DeliverySchema,
    DryRunSchema,
    NotificationCreateSchema,
    NotificationDetailSchema,
    NotificationListQuerySchema,
    NotificationSchema,
    PageQuerySchema,
    PlanItemSchema,
    RecipientsAddedSchema,
    RecipientsSchema,
    page_of,
)
from ...services.fanout import in_progress
from ..base import APIHandler, endpoint

TAGS = ("notifications",)


class NotificationsHandler(APIHandler):
    @endpoint(
        "notifications:read",
        "List notifications, newest first",
        query=NotificationListQuerySchema,
        response=page_of(NotificationSchema),
        tags=TAGS,
        errors=(400, 401, 403),
    )
    async def get(self):
        self.respond(await self.ctx.notifications.page(self.principal, self.load_query()))

    @endpoint(
        "notifications:write",
        "Create a notification for a list of recipients (`?dry_run=true`: answer 200 with the plan of every "
        "recipient and a sample of the content, as DryRun, storing and sending nothing)",
        body=NotificationCreateSchema,
        response=NotificationSchema,
        status=201,
        also=(202,),
        tags=TAGS,
        errors=(400, 401, 403, 409, 413, 415),
    )
    async def post(self):
        if self.flag("dry_run"):
            self.respond_as(DryRunSchema, await self.ctx.plans.dry_run(self.principal, self.load_body()))
            return
        key = self.request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 255:
            raise Invalid.field("Idempotency-Key", "must be 1-255 characters")
        notification, created = await self.ctx.notifications.create(self.principal, self.load_body(), key)
        if not created:
            self.set_header("Idempotent-Replayed", "true")
        self.set_header("Location", f"/api/v1/notifications/{notification['_id']}")
        # 202: its deliveries are still being stored; the notification at Location says how far (`fanout`).
        self.respond(notification, status=202 if in_progress(notification) else 201)


class NotificationHandler(APIHandler):
    @endpoint(
        "notifications:read",
        "A notification with its deliveries counted by status and reason",
        response=NotificationDetailSchema,
        tags=TAGS,
        errors=(401, 403, 404),
    )
    async def get(self, notification_id):
        self.respond(await self.ctx.notifications.get(self.principal, notification_id))


class DeliveriesHandler(APIHandler):
    @endpoint(
        "notifications:read",
        "The notification's deliveries, one per recipient",
        query=DeliveryListQuerySchema,
        response=page_of(DeliverySchema),
        tags=TAGS,
        errors=(400, 401, 403, 404),
    )
    async def get(self, notification_id):
        self.respond(await self.ctx.notifications.deliveries(self.principal, notification_id, self.load_query()))


class RecipientsHandler(APIHandler):
    @endpoint(
        "notifications:write",
        "Add recipients to a notification (present ones are left alone)",
        body=RecipientsSchema,
        response=RecipientsAddedSchema,
        tags=TAGS,
        errors=(400, 401, 403, 404, 413, 415),
    )
    async def post(self, notification_id):
        recipients = self.load_body()["recipients"]
        added, present = await self.ctx.notifications.add_recipients(self.principal, notification_id, recipients)
        self.respond({"added": added, "already_present": present})


class PlanHandler(APIHandler):
    @endpoint(
        "notifications:read",
        "Per recipient: what will happen (send, skip, defer, expire), why, and when in UTC and local time",
        query=PageQuerySchema,
        response=page_of(PlanItemSchema),
        tags=TAGS,
        errors=(400, 401, 403, 404),
    )
    async def get(self, notification_id):
        self.respond(await self.ctx.plans.plan(self.principal, notification_id, self.load_query()))


class CancelHandler(APIHandler):
    @endpoint(
        "notifications:write",
        "Cancel what has not gone yet, for every recipient or some",
        body=CancelSchema,
        response=CancelledSchema,
        tags=TAGS,
        errors=(400, 401, 403, 404, 415),
    )
    async def post(self, notification_id):
        user_ids = self.load_body(optional=True)["user_ids"]
        self.respond(await self.ctx.notifications.cancel(self.principal, notification_id, user_ids))


class CancelByKeyHandler(APIHandler):
    @endpoint(
        "notifications:write",
        "Cancel every notification you created with a cancellation_key",
        body=CancelByKeySchema,
        response=CancelledByKeySchema,
        tags=TAGS,
        errors=(400, 401, 403, 415),
    )
    async def post(self):
        key = self.load_body()["cancellation_key"]
        self.respond(await self.ctx.notifications.cancel_by_key(self.principal, key))


ID = r"(?P<notification_id>[^/]+)"
routes = [
    (r"/api/v1/notifications", NotificationsHandler),
    (r"/api/v1/notifications/cancel", CancelByKeyHandler),
    (rf"/api/v1/notifications/{ID}", NotificationHandler),
    (rf"/api/v1/notifications/{ID}/deliveries", DeliveriesHandler),
    (rf"/api/v1/notifications/{ID}/recipients", RecipientsHandler),
    (rf"/api/v1/notifications/{ID}/cancel", CancelHandler),
    (rf"/api/v1/notifications/{ID}/plan", PlanHandler),
]
