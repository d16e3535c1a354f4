"""HTTP sends shared by the webhook and Telegram channels: one client per process, failures classified."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from ..outbound import DestinationRefused, OutboundHTTP
from .base import DESTINATION_REFUSED, DESTINATION_UNREACHABLE, PermanentFailure, TemporaryFailure, http_answer

RETRYABLE_STATUS = {408, 425, 429}


def _retry_after(response: HTTPResponse | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


async def post_json(
    client: AsyncHTTPClient | OutboundHTTP, url: str, body: dict, headers: dict, timeout: float
) -> HTTPResponse:
    """POST `body`; return the 2xx response or raise TemporaryFailure / PermanentFailure.

    A caller learns the status code of an answer and nothing else: a refused connection, a timeout and a
    name that fails to resolve for now all read "destination unreachable" (else the service is a port
    scanner); what happened, and where (never the path, which may hold the receiver's secret), is the detail."""
    request = HTTPRequest(
        url,
        method="POST",
        body=json.dumps(body),
        request_timeout=timeout,
        connect_timeout=timeout,
        follow_redirects=False,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        return await client.fetch(request)
    except DestinationRefused as exc:
        raise PermanentFailure(
            DESTINATION_REFUSED,
            reason="destination_refused",
            detail=f"refused to connect to {_origin(url)}: {exc.detail}",
        ) from None
    except HTTPClientError as exc:
        status, detail = exc.code, f"{_origin(url)} answered HTTP {exc.code}: {exc.message}"
        if status == 599:  # tornado's code for a timeout or a connection closed before the answer
            raise TemporaryFailure(DESTINATION_UNREACHABLE, detail=detail) from None
        if status >= 500 or status in RETRYABLE_STATUS:
            raise TemporaryFailure(http_answer(status), _retry_after(exc.response), detail=detail) from None
        raise PermanentFailure(http_answer(status), detail=detail) from None
    except OSError as exc:
        raise TemporaryFailure(
            DESTINATION_UNREACHABLE, detail=f"{_origin(url)} unreachable: {type(exc).__name__}: {exc}"
        ) from None


def _origin(url: str) -> str:
    """Scheme, host and port of `url` for the log (a webhook path may hold the receiver's secret)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "a malformed URL"
