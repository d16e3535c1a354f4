"""A browser-like client for the admin: keeps cookies, posts forms with their XSRF token."""

from __future__ import annotations

import re
import uuid
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from tornado.httpclient import HTTPRequest

from ...conftest import ADMIN_PASSWORD
from ...support import Response


class Browser:
    def __init__(self, base_url: str, client):
        self.base_url = base_url
        self.client = client
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []

    async def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Response:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        request = HTTPRequest(
            self.base_url + path,
            method=method,
            body=body,
            headers=headers,
            follow_redirects=False,
            allow_nonstandard_methods=True,
        )
        response = await self.client.fetch(request, raise_error=False)
        for header in response.headers.get_list("Set-Cookie"):
            self.set_cookie_headers.append(header)
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel["expires"] and "1970" in morsel["expires"] or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return Response(response.code, None, response.headers, response.body or b"")

    async def get(self, path: str) -> Response:
        return await self.request("GET", path)

    def xsrf(self) -> str:
        return self.cookies.get("_xsrf", "")

    async def post(
        self, path: str, fields: dict | list | None = None, xsrf: bool = True, files: dict | None = None
    ) -> Response:
        if "_xsrf" not in self.cookies:
            await self.get("/admin/login")
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields or [])
        if xsrf:
            pairs.append(("_xsrf", self.xsrf()))
        if files:
            boundary = uuid.uuid4().hex
            parts = []
            for name, value in pairs:
                parts.append(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                )
            for name, (filename, content) in files.items():
                parts.append(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    f"Content-Type: text/csv\r\n\r\n".encode()
                    + content
                    + b"\r\n"
                )
            body = b"".join(parts) + f"--{boundary}--\r\n".encode()
            return await self.request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        return await self.request(
            "POST", path, urlencode(pairs).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )

    async def login(self, username: str = "root", password: str = ADMIN_PASSWORD) -> Response:
        await self.get("/admin/login")
        return await self.post("/admin/login", {"username": username, "password": password, "next": "/admin/"})


def text(response: Response) -> str:
    return response.raw.decode()


def field_errors(response: Response, name: str) -> list[str]:
    """The error items shown next to one form field."""
    html = text(response)
    match = re.search(rf'<label for="f-{name}">(.*?)(?=<div class="field|</form>)', html, re.S)
    errors = re.search(r'<ul class="error">(.*?)</ul>', match.group(1), re.S) if match else None
    return re.findall(r"<li>(.*?)</li>", errors.group(1)) if errors else []


@pytest.fixture
def browser(http_client, base_url):
    return Browser(base_url, http_client)


@pytest.fixture
def logged_in(io_loop, browser, admin):
    response = io_loop.run_sync(browser.login)
    assert response.status == 302 and response.headers["Location"] == "/admin/"
    return browser
