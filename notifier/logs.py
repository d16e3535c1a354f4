"""Log setup: one line per event, text or JSON, carrying the request id of the work it belongs to."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid

FIELDS = ("request_id", "delivery_id", "notification_id", "consumer")
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def begin_request(offered: str | None) -> str:
    """The id of this request (the caller's X-Request-Id when it is sane, else a new one), set for its logs."""
    rid = offered if offered and REQUEST_ID_PATTERN.fullmatch(offered) else uuid.uuid4().hex
    request_id.set(rid)
    return rid


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{key}={getattr(record, key)}" for key in FIELDS if getattr(record, key, None) is not None)
        return f"{line} [{extras}]" if extras else line


def setup_logging(level: str, fmt: str, process: str = "server") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(f"%(asctime)s %(levelname)s [{process}] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiormq").setLevel(logging.WARNING)
