"""Helpers shared by the tests: an API caller, polling with a deadline, token minting."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from notifier.access import Principal, Role

# Who test set-up code writes as when it calls a service directly (an admin: every permission).
TEST_ADMIN = Principal(Role.ADMIN, "test", "test")


@dataclass
class Response:
    status: int
    body: Any
    headers: Any
    raw: bytes


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


class Api:
    """Calls the server under test; never raises on an HTTP error status."""

    def __init__(self, base_url: str, client: AsyncHTTPClient):
        self.base_url = base_url
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: str | None = None,
        headers: dict | None = None,
        raw: bytes | None = None,
        timeout: float = 30,
    ) -> Response:
        request_headers = dict(headers or {})
        if auth:
            request_headers["Authorization"] = auth
        payload = raw
        if body is not None:
            payload = json.dumps(body).encode()
            request_headers.setdefault("Content-Type", "application/json")
        if payload is None and method in ("POST", "PUT", "PATCH"):
            payload = b""
        request = HTTPRequest(
            self.base_url + path,
            method=method,
            headers=request_headers,
            body=payload,
            request_timeout=timeout,
            allow_nonstandard_methods=True,
            follow_redirects=False,
        )
        response = await self.client.fetch(request, raise_error=False)
        data = response.body or b""
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return Response(response.code, parsed, response.headers, data)

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.call("POST", path, body, **kwargs)

    def put(self, path, body=None, **kwargs):
        return self.call("PUT", path, body, **kwargs)

    def delete(self, path, **kwargs):
        return self.call("DELETE", path, **kwargs)


def user_token(secret: str, user_id: str, ttl: int = 600, algorithm: str = "HS256", **claims) -> str:
    now = int(time.time())
    payload = {"sub": user_id, "iat": now, "exp": now + ttl, **claims}
    return jwt.encode(payload, secret, algorithm=algorithm)


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 20.0, interval: float = 0.05, message: str = "condition"
):
    """Poll `check` until it returns a truthy value, which is returned; fail with `message` when the deadline
    passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} not reached within {timeout}s (last: {last!r})")


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.2, tolerate: tuple = ()):
    """`eventually` for code outside an event loop (tests of real processes): poll `condition` until it returns
    something truthy, which is returned; `tolerate` lists exceptions that count as "not yet" (a server still
    starting refuses connections)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except tolerate as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not reached within {timeout}s (last: {last!r})")
