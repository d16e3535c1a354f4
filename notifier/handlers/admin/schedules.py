"""Schedules: list, create, edit (with the next fire times), enable/disable, delete."""

from __future__ import annotations

import re
from typing import Any

from ...errors import Invalid
from ...schemas import PeriodicitySchema, ScheduleCreateSchema, ScheduleListQuerySchema
from .base import CHANNEL_OPTIONS, AdminHandler, blank_to_none, checkbox, invalid_errors, split_ids

MISFIRE_OPTIONS = (("run_once", "run once (within the grace window)"), ("skip", "skip"))
PERIODICITY_OPTIONS = (("cron", "cron expression"), ("interval", "every N seconds"))


def whole_number(value: str) -> int | str:
    """A form's digits as an int; anything else is left for the schema to refuse."""
    return int(value) if re.fullmatch(r"[0-9]{1,12}", value.strip()) else value


def periodicity(values: dict) -> dict:
    """The form's periodicity fields as the API takes them."""
    data = blank_to_none({k: values.get(k, "") for k in ("timezone", "start_at", "end_at")}, "start_at", "end_at")
    data["timezone"] = data["timezone"] or "UTC"
    if values.get("kind") == "interval":
        data["interval_seconds"], data["cron"] = whole_number(values.get("interval_seconds", "")), None
    else:
        data["cron"], data["interval_seconds"] = values.get("cron", ""), None
    data["user_ids"] = split_ids(values.get("user_ids", ""))
    data["enabled"] = checkbox(values, "enabled")
    data["misfire_policy"] = values.get("misfire_policy", "run_once")
    data["misfire_grace_seconds"] = whole_number(values.get("misfire_grace_seconds") or "3600")
    return data


def form_values(schedule: dict) -> dict:
    return {
        "kind": "interval" if schedule.get("interval_seconds") else "cron",
        "cron": schedule.get("cron") or "",
        "interval_seconds": schedule.get("interval_seconds") or "",
        "timezone": schedule.get("timezone", "UTC"),
        "start_at": schedule["start_at"].isoformat() if schedule.get("start_at") else "",
        "end_at": schedule["end_at"].isoformat() if schedule.get("end_at") else "",
        "user_ids": "\n".join(schedule.get("user_ids", [])),
        "enabled": schedule.get("enabled", True),
        "misfire_policy": schedule.get("misfire_policy", "run_once"),
        "misfire_grace_seconds": schedule.get("misfire_grace_seconds", 3600),
    }


class SchedulesHandler(AdminHandler):
    async def get(self):
        filters = self.query()
        query = {k: v for k, v in blank_to_none(filters, "enabled", "cursor").items() if v is not None}
        page = await self.ctx.schedules.page(self.current_user, self.validate(ScheduleListQuerySchema, query))
        self.page("schedules.html", page=page, filters=filters)


FORM_CHOICES: dict[str, Any] = {
    "channel_options": CHANNEL_OPTIONS,
    "misfire_options": MISFIRE_OPTIONS,
    "periodicity_options": PERIODICITY_OPTIONS,
}


class ScheduleNewHandler(AdminHandler):
    def get(self):
        self.page(
            "schedule_form.html",
            schedule=None,
            preview=None,
            message=None,
            errors={},
            values={
                "kind": "cron",
                "timezone": "UTC",
                "enabled": True,
                "channel": "email",
                "misfire_policy": "run_once",
                "misfire_grace_seconds": 3600,
            },
            **FORM_CHOICES,
        )

    async def submit(self):
        values = self.form()
        data = periodicity(values)
        if values.get("notification_id"):
            data["notification_id"] = values["notification_id"]
        else:
            data["notification"] = {
                "title": values.get("title", ""),
                "text": values.get("text", ""),
                "channel": values.get("channel", "email"),
                "is_express": checkbox(values, "is_express"),
            }
        try:
            schedule = await self.ctx.schedules.create(self.current_user, self.validate(ScheduleCreateSchema, data))
        except Invalid as exc:
            errors = invalid_errors(exc)
            errors.update(errors.pop("notification", {}) if isinstance(errors.get("notification"), dict) else {})
            self.page(
                "schedule_form.html",
                status=400,
                schedule=None,
                preview=None,
                message=exc.message,
                errors=errors,
                values=values,
                **FORM_CHOICES,
            )
            return
        self.after(f"/admin/schedules/{schedule['_id']}", "Schedule created.")


class ScheduleHandler(AdminHandler):
    async def get(self, schedule_id):
        schedule = await self.ctx.schedules.get(self.current_user, schedule_id)
        preview = await self.ctx.schedules.preview(self.current_user, schedule_id, 10)
        self.page(
            "schedule_form.html",
            schedule=schedule,
            preview=preview,
            message=None,
            errors={},
            values=form_values(schedule),
            **FORM_CHOICES,
        )

    async def submit(self, schedule_id):
        values = self.form()
        try:
            changes = self.validate(PeriodicitySchema, periodicity(values))
            schedule = await self.ctx.schedules.update(self.current_user, schedule_id, changes)
        except Invalid as exc:
            schedule = await self.ctx.schedules.get(self.current_user, schedule_id)
            self.page(
                "schedule_form.html",
                status=400,
                schedule=schedule,
                preview=None,
                message=exc.message,
                errors=invalid_errors(exc),
                values=values,
                **FORM_CHOICES,
            )
            return
        self.after(f"/admin/schedules/{schedule['_id']}", "Schedule saved; it applies from the next tick.")


class ScheduleToggleHandler(AdminHandler):
    async def submit(self, schedule_id):
        schedule = await self.ctx.schedules.get(self.current_user, schedule_id)
        enabled = not schedule.get("enabled", True)
        await self.ctx.schedules.update(self.current_user, schedule_id, {"enabled": enabled})
        self.after("/admin/schedules", f"Schedule {'enabled' if enabled else 'disabled'}.")


class ScheduleDeleteHandler(AdminHandler):
    async def submit(self, schedule_id):
        await self.ctx.schedules.delete(self.current_user, schedule_id)
        self.after("/admin/schedules", "Schedule deleted.")
