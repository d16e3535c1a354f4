"""Users (contacts and preferences), client applications, and admins."""

from __future__ import annotations

from ...access import GRANTABLE
from ...domain import CHANNELS
from ...errors import Conflict, Invalid
from ...schemas import ClientCreateSchema, ClientPermissionsSchema, PageQuerySchema, UserWriteSchema
from ...services.users import CONTACT_FIELDS, check_user_id
from ..base import error_status
from .base import AdminHandler, blank_to_none, checkbox, invalid_errors


def page_query(handler: AdminHandler) -> dict:
    filters = handler.query()
    return handler.validate(PageQuerySchema, {k: v for k, v in filters.items() if k == "cursor" and v})


class UsersHandler(AdminHandler):
    async def get(self):
        query = page_query(self)
        page = await self.ctx.users.page(query["limit"], query.get("cursor"))
        self.page("users.html", page=page, filters=self.query())


def user_values(user: dict) -> dict:
    values = {field: user.get(field) or "" for field in CONTACT_FIELDS}
    values.update({f"unsub_{c}": c in (user.get("unsubscribed_channels") or []) for c in CHANNELS})
    values["unsubscribed_all"] = user.get("unsubscribed_all", False)
    values["user_id"] = user.get("user_id", "")
    return values


class UserFormHandler(AdminHandler):
    async def get(self, user_id=None):
        user = await self.ctx.users.get(user_id) if user_id else {}
        self.page(
            "user_form.html", user_id=user_id, values=user_values(user), errors={}, message=None, channels=CHANNELS
        )

    async def submit(self, user_id=None):
        values = self.form()
        target = user_id or values.get("user_id", "").strip()
        data = blank_to_none({field: values.get(field, "").strip() for field in CONTACT_FIELDS}, *CONTACT_FIELDS)
        data["unsubscribed_channels"] = [c for c in CHANNELS if checkbox(values, f"unsub_{c}")]
        data["unsubscribed_all"] = checkbox(values, "unsubscribed_all")
        try:
            check_user_id(target)
            _, created = await self.ctx.users.put(self.current_user, target, self.validate(UserWriteSchema, data))
        except Invalid as exc:
            self.page(
                "user_form.html",
                status=400,
                user_id=user_id,
                values=values,
                errors=invalid_errors(exc),
                message=exc.message,
                channels=CHANNELS,
            )
            return
        self.after("/admin/users", f"User {target} {'created' if created else 'saved'}.")


class UserDeleteHandler(AdminHandler):
    async def submit(self, user_id):
        await self.ctx.users.delete(self.current_user, user_id)
        self.after("/admin/users", f"User {user_id} deleted.")


class ClientListPage(AdminHandler):
    """The clients page, shown by the list and by the forms that answer with it (a new password)."""

    async def show(self, values=None, errors=None, message=None, status=200, password=None):
        query = page_query(self)
        page = await self.ctx.clients.page(query["limit"], query.get("cursor"))
        self.page(
            "clients.html",
            status=status,
            page=page,
            filters=self.query(),
            values=values or {},
            errors=errors or {},
            message=message,
            password=password,
            grantable=GRANTABLE,
        )


class ClientsHandler(ClientListPage):
    async def get(self):
        await self.show()

    async def submit(self):
        values = self.form()
        try:
            data = self.validate(
                ClientCreateSchema,
                {
                    "login": values.get("login", ""),
                    "name": values.get("name", ""),
                    "permissions": self.get_body_arguments("permission"),
                },
            )
            client, password = await self.ctx.clients.create(
                data["login"], data["name"], self.current_user, data["permissions"]
            )
        except (Invalid, Conflict) as exc:
            await self.show(values, invalid_errors(exc), exc.message, error_status(exc))
            return
        await self.show(password={"login": client["login"], "password": password})


class ClientToggleHandler(AdminHandler):
    async def submit(self, client_id):
        client = await self.ctx.clients.get(client_id)
        client = await self.ctx.clients.set_active(client_id, not client.get("active", True))
        self.after("/admin/clients", f"Client {client['login']} {'activated' if client['active'] else 'deactivated'}.")


class ClientPermissionsHandler(AdminHandler):
    async def submit(self, client_id):
        client = await self.ctx.clients.get(client_id)
        try:
            data = self.validate(ClientPermissionsSchema, {"permissions": self.get_body_arguments("permission")})
        except Invalid as exc:
            self.after("/admin/clients", f"Permissions of {client['login']} not changed: {exc.message}")
            return
        client = await self.ctx.clients.set_permissions(client_id, data["permissions"], self.current_user)
        granted = ", ".join(client["permissions"]) or "none"
        self.after("/admin/clients", f"Permissions of {client['login']}: {granted}.")


class ClientResetHandler(ClientListPage):
    async def submit(self, client_id):
        client = await self.ctx.clients.get(client_id)
        password = await self.ctx.clients.reset_password(client_id)
        await self.show(password={"login": client["login"], "password": password})


class ClientDeleteHandler(AdminHandler):
    async def submit(self, client_id):
        await self.ctx.clients.delete(client_id)
        self.after("/admin/clients", "Client deleted.")


class AdminsHandler(AdminHandler):
    async def get(self, values=None, errors=None, message=None, status=200):
        query = page_query(self)
        page = await self.ctx.admins.page(query["limit"], query.get("cursor"))
        self.page(
            "admins.html",
            status=status,
            page=page,
            filters=self.query(),
            values=values or {},
            errors=errors or {},
            message=message,
        )

    async def submit(self):
        values = self.form()
        try:
            admin = await self.ctx.admins.create(values.get("username", "").strip(), values.get("password", ""))
        except (Invalid, Conflict) as exc:
            await self.get(
                {"username": values.get("username", "")}, invalid_errors(exc), exc.message, error_status(exc)
            )
            return
        self.after("/admin/admins", f"Admin {admin['username']} created.")


class AdminToggleHandler(AdminHandler):
    async def submit(self, admin_id):
        admin = await self.ctx.admins.get(admin_id)
        try:
            admin = await self.ctx.admins.set_active(admin_id, not admin.get("active", True), self.current_user)
        except Invalid as exc:
            self.after("/admin/admins", exc.message)
            return
        self.after("/admin/admins", f"Admin {admin['username']} {'activated' if admin['active'] else 'deactivated'}.")


class AdminPasswordHandler(AdminHandler):
    async def submit(self, admin_id):
        admin = await self.ctx.admins.get(admin_id)
        try:
            await self.ctx.admins.set_password(admin_id, self.form().get("password", ""))
        except Invalid as exc:
            self.after("/admin/admins", f"Password not changed: {exc.message}")
            return
        if admin_id == self.admin.id:
            await self.start_session(self.admin)  # the change logged every session out, but not this one
        self.after("/admin/admins", f"Password of {admin['username']} changed; their other sessions are logged out.")
