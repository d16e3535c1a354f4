"""The admin's pages: a signed, HttpOnly, SameSite session cookie; XSRF on every form; errors as pages."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import tornado.web

from ...access import Principal
from ...domain import CHANNELS
from ...errors import DomainError, Unauthenticated
from ..base import CSP_ADMIN, FormPageHandler, load

CHANNEL_OPTIONS = tuple((channel, channel) for channel in CHANNELS)  # a select's (value, label) pairs
SESSION_COOKIE = "notifier_admin"
FLASH_COOKIE = "notifier_flash"


class AdminHandler(FormPageHandler):
    login_required = True
    takes_upload = False  # a form with a CSV file: the larger MAX_UPLOAD_BYTES, once logged in
    current_user: Principal | None

    content_security_policy = CSP_ADMIN  # no script, no inline style, nothing from elsewhere

    async def prepare(self) -> None:
        self.begin_request()
        self.current_user = await self._session()
        if self.current_user is None and self.login_required:
            if self.request.method in ("GET", "HEAD"):
                self.redirect(f"{self.get_login_url()}?{urlencode({'next': self.request.uri})}")
            else:
                self.redirect(self.get_login_url())
            return
        settings = self.ctx.settings
        self.limit_body(
            settings.max_upload_bytes if self.takes_upload and self.current_user else settings.max_form_bytes
        )

    @property
    def admin(self) -> Principal:
        """The logged-in admin of a page that needs one (prepare() sent anyone else to the login page)."""
        if self.current_user is None:
            raise Unauthenticated("Log in first")
        return self.current_user

    # --- session ---

    def _cookie_options(self) -> dict:
        return {
            "httponly": True,
            "samesite": "Strict",
            "path": "/admin",
            "secure": self.ctx.settings.public_url.startswith("https://"),
        }

    async def _session(self) -> Principal | None:
        session_id = self._session_id()
        return await self.ctx.auth.admin_by_session(session_id) if session_id else None

    def _session_id(self) -> str | None:
        hours = self.ctx.settings.admin_session_hours
        raw = self.get_signed_cookie(SESSION_COOKIE, max_age_days=hours / 24 + 1)
        try:
            session_id = json.loads(raw)["sid"] if raw else None
        except (ValueError, KeyError, TypeError):
            return None
        return session_id if isinstance(session_id, str) else None

    async def start_session(self, admin: Principal) -> None:
        hours = self.ctx.settings.admin_session_hours
        session_id = await self.ctx.auth.open_admin_session(admin, hours)
        self.set_signed_cookie(
            SESSION_COOKIE, json.dumps({"sid": session_id}), expires_days=hours / 24, **self._cookie_options()
        )

    async def end_session(self) -> None:
        """Log out: the session ends in the database too, so a copied cookie is worthless."""
        session_id = self._session_id()
        if session_id:
            await self.ctx.auth.close_admin_session(session_id)
        self.clear_cookie(SESSION_COOKIE, path="/admin")

    # --- pages ---

    def flash(self, message: str) -> None:
        self.set_signed_cookie(FLASH_COOKIE, message, expires_days=None, **self._cookie_options())

    def _take_flash(self) -> str | None:
        message = self.get_signed_cookie(FLASH_COOKIE, max_age_days=1)
        if message:
            self.clear_cookie(FLASH_COOKIE, path="/admin")
        return message.decode() if message else None

    def page(self, template: str, status: int = 200, **values: Any) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.render(f"admin/{template}", admin=self.current_user, flash=self._take_flash(), **values)

    def form(self) -> dict[str, str]:
        """The posted fields, one value each (lists are read with get_body_arguments)."""
        return {name: self.get_body_argument(name) for name in self.request.body_arguments}

    def query(self) -> dict[str, str]:
        return {name: self.get_query_argument(name) for name in self.request.query_arguments}

    def validate(self, schema, data: dict) -> dict:
        return load(schema, data, "form")

    def after(self, path: str, message: str) -> None:
        """Post/redirect/get: say what happened on the next page."""
        self.flash(message)
        self.redirect(path)


def blank_to_none(data: dict, *names: str) -> dict:
    """Empty form inputs mean "not set"."""
    return {k: (None if k in names and v == "" else v) for k, v in data.items()}


def split_ids(text: str) -> list[str]:
    """User ids pasted one per line, or separated by commas or spaces."""
    return [part for part in text.replace(",", " ").split() if part]


def checkbox(data: dict, name: str) -> bool:
    return data.get(name) in ("on", "true", "1", "yes")


def invalid_errors(exc: DomainError) -> dict:
    """Field errors flattened for display next to each field."""
    flat: dict[str, list[str]] = {}
    for field, messages in exc.errors.items():
        if isinstance(messages, dict):
            flat[field] = [f"{key}: {value}" for key, value in messages.items()]
        else:
            flat[field] = list(messages)
    return flat


class Field(tornado.web.UIModule):
    """A labelled input that keeps what was typed and shows its errors beside it."""

    def render(
        self,
        name: str,
        label: str,
        values: dict,
        errors: dict,
        kind: str = "text",
        options: tuple = (),
        help: str = "",
        required: bool = False,
        rows: int = 4,
    ) -> bytes:
        return self.render_string(
            "admin/_field.html",
            name=name,
            label=label,
            value=values.get(name, ""),
            errors=errors.get(name, []),
            kind=kind,
            options=options,
            help=help,
            required=required,
            rows=rows,
        )


class Pager(tornado.web.UIModule):
    """A link to the next page that keeps the list's filters."""

    def render(self, next_cursor: str | None, filters: dict) -> str:
        if not next_cursor:
            return ""
        query = urlencode(
            {**{k: v for k, v in filters.items() if v not in (None, "") and k != "cursor"}, "cursor": next_cursor}
        )
        return f'<p class="pager"><a href="?{query}">Next page &rarr;</a></p>'
