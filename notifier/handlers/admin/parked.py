"""Parked deliveries (failed for good): list with reasons, redrive one or a filtered set, audited."""

from __future__ import annotations

from ...schemas import PageQuerySchema
from ...services import object_id
from .base import AdminHandler, blank_to_none


class ParkedHandler(AdminHandler):
    async def get(self):
        filters = self.query()
        query = self.validate(PageQuerySchema, {k: v for k, v in filters.items() if k == "cursor" and v})
        selection = blank_to_none(
            {k: filters.get(k, "") for k in ("reason", "notification_id")}, "reason", "notification_id"
        )
        notification = object_id(selection["notification_id"], "Notification") if selection["notification_id"] else None
        page = await self.ctx.parked.page(query["limit"], query.get("cursor"), selection["reason"], notification)
        self.page("parked.html", page=page, filters=filters, audit=await self.ctx.parked.audit())


class RedriveHandler(AdminHandler):
    async def submit(self):
        values = self.form()
        ids = [object_id(i, "Delivery") for i in self.get_body_arguments("delivery_id")]
        if values.get("scope") == "selected" and not ids:
            self.after("/admin/parked", "Nothing selected.")
            return
        selection = blank_to_none(
            {k: values.get(k, "") for k in ("reason", "notification_id")}, "reason", "notification_id"
        )
        notification = object_id(selection["notification_id"], "Notification") if selection["notification_id"] else None
        count = await self.ctx.parked.redrive(
            self.admin.name,
            ids=ids if values.get("scope") == "selected" else None,
            reason=selection["reason"],
            notification_id=notification,
        )
        self.ctx.stats.forget()
        self.after("/admin/parked", f"{count} deliveries sent again.")
