"""HTTP sends shared by the webhook and Telegram channels: one client per process, failures classified."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from ..outbound import DestinationRefused, OutboundHTTP
from .base import PermanentFailure, TemporaryFailure

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 425, 429}
# All a caller learns of a refused destination: what was refused and why stays in the log.
DESTINATION_REFUSED = "destination not allowed"


def _retry_after(response: HTTPResponse | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


async def post_json(client: AsyncHTTPClient | OutboundHTTP, url: str, body: dict, headers: dict,
                    timeout: float) -> HTTPResponse:
    """POST `body`; return the 2xx response or raise TemporaryFailure / PermanentFailure."""
    request = HTTPRequest(url, method="POST", body=json.dumps(body), request_timeout=timeout,
                          connect_timeout=timeout, follow_redirects=False,
                          headers={"Content-Type": "application/json", **headers})
    try:
        return await client.fetch(request)
    except DestinationRefused as exc:
        log.warning("refused to connect to %s: %s", _origin(url), exc.detail)
        raise PermanentFailure(DESTINATION_REFUSED, reason="destination_refused") from None
    except HTTPClientError as exc:
        status = exc.code
        if status == 599 or status >= 500 or status in RETRYABLE_STATUS:
            raise TemporaryFailure(f"HTTP {status}: {exc.message}", _retry_after(exc.response)) from None
        raise PermanentFailure(f"HTTP {status}: {exc.message}") from None
    except OSError as exc:
        raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from None


def _origin(url: str) -> str:
    """Scheme, host and port of `url` for the log (a webhook path may hold the receiver's secret)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "a malformed URL"
