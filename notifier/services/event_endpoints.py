"""Event endpoints: where a caller wants its status events (services/events.py) POSTed, and the sender.

**An endpoint** belongs to its author (a client application, or an admin) and receives the events of the
notifications that author creates, of the types it names, in event id order. Its signing secret is derived
from the service's root key and a random nonce kept on the endpoint (never stored itself), shown when the
endpoint is created and when it is rotated; a rotation keeps the old secret valid for a grace period, during
which every POST carries a signature with each.

**A POST** carries the event as JSON (`id`, `type`, `created_at`, `data`), `Idempotency-Key: <event id>` and
`Notifier-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`, each v1 the HMAC-SHA256 of `<t>.<body>` with one
secret. Any 2xx acknowledges it. It goes through the outbound-HTTP policy (notifier/outbound.py) like every
destination a caller chooses.

**The sender** (job "event sender", on the instance holding its lease) keeps a cursor per endpoint: the last
event acknowledged. Each round POSTs the next EVENT_BATCH events, EVENT_CONCURRENCY at a time (none more once
one failed), and moves the cursor past the longest acknowledged prefix; a repeat of an acknowledged one
carries the same id (receivers drop repeats by it). A failure holds the endpoint back EVENT_RETRY_FIRST
seconds, doubling per failed round up to EVENT_RETRY_MAX; an endpoint failing for EVENT_DISABLE_AFTER seconds
is disabled (its events still accumulate; enabled again, it resumes at its cursor). A replay moves the cursor
back to an instant: the events since are sent again, with the same ids.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from bson import ObjectId
from tornado.httpclient import HTTPClientError, HTTPRequest

from ..access import Principal, Role
from ..clock import Clock
from ..errors import Conflict, Invalid, NotFound
from ..metrics import EVENT_LAG_SECONDS, EVENT_POSTS
from ..outbound import DestinationRefused, OutboundHTTP
from ..settings import Settings
from ..store import Store
from . import object_id
from .events import STATE_ID, EventLog
from .paging import Page, floor_id, newest_first
from .visibility import visible_to

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Notifier-Signature"
ATTEMPTS_SHOWN = 50
ERROR_LENGTH = 300
ROUND_SECONDS = 5.0  # an endpoint's task gives up its turn after this long; the next run goes on
REPLAY_EVERY = timedelta(seconds=60)  # an endpoint may be replayed once a minute (each replay resends history)
MAX_ANSWER_BYTES = 64 * 1024  # an endpoint's answer is only looked at for its status


def in_force(signing: list[dict], now: datetime) -> list[dict]:
    """The signing secrets (nonces) of an endpoint still valid at `now`."""
    return [s for s in signing if s.get("until") is None or s["until"] > now]


def signature_header(secrets_: Iterable[str], timestamp: int, body: bytes) -> str:
    """`t=<timestamp>,v1=<hmac>` with one v1 per secret in force."""
    signed = str(timestamp).encode() + b"." + body
    parts = [f"t={timestamp}"]
    parts += [f"v1={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in secrets_]
    return ",".join(parts)


def event_body(event: dict) -> dict:
    """What an endpoint receives, and what the feed lists."""
    data: dict = {"notification_id": str(event["notification_id"])}
    if event.get("delivery_id") is not None:
        data.update(
            delivery_id=str(event["delivery_id"]),
            user_id=event.get("user_id"),
            channel=event.get("channel"),
            reason=event.get("reason"),
        )
    if event.get("counts") is not None:
        data["counts"] = event["counts"]
    return {"id": str(event["_id"]), "type": event["type"], "created_at": event["at"].isoformat(), "data": data}


def _types(types: list[str] | None) -> list[str] | None:
    """The event types an endpoint asks for; None: every type, those added later too."""
    return sorted(set(types)) if types else None


class EventEndpoints:
    def __init__(self, store: Store, settings: Settings, clock: Clock, root_key: bytes):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.root_key = root_key

    # --- secrets ---

    def secret(self, nonce: str) -> str:
        digest = hmac.new(self.root_key, nonce.encode(), hashlib.sha256).digest()
        return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def secrets_in_force(self, endpoint: dict, now: datetime) -> list[str]:
        return [self.secret(signing["nonce"]) for signing in in_force(endpoint.get("signing", []), now)]

    # --- the API's operations ---

    async def create(self, principal: Principal, data: dict) -> tuple[dict, str]:
        """A new endpoint of `principal`'s and its secret (shown only now)."""
        now = self.clock.now()
        author = principal.as_author()
        owned = await self.store.event_endpoints.count_documents(
            {"author.kind": author["kind"], "author.id": author["id"]}
        )
        if owned >= self.settings.event_endpoints_per_author:
            raise Conflict(
                f"At most {self.settings.event_endpoints_per_author} event endpoints per caller",
                {"url": ["too many event endpoints; delete one first"]},
            )
        nonce = secrets.token_hex(16)
        endpoint = {
            "author": author,
            "url": data["url"],
            "types": _types(data.get("types")),
            "description": data.get("description", ""),
            "enabled": True,
            "signing": [{"nonce": nonce, "until": None, "created_at": now}],
            "cursor": floor_id(now.timestamp()),  # events from now on
            "retry_at": now,
            "failures": 0,
            "failing_since": None,
            "created_at": now,
            "updated_at": now,
        }
        await self.store.event_endpoints.insert_one(endpoint)
        return endpoint, self.secret(nonce)

    async def get(self, principal: Principal, endpoint_id: str) -> dict:
        query = visible_to(principal, {"_id": object_id(endpoint_id, "Event endpoint")})
        endpoint = await self.store.event_endpoints.find_one(query)
        if endpoint is None:
            raise NotFound(f"Event endpoint {endpoint_id!r} not found")
        return endpoint

    async def page(self, principal: Principal, limit: int, cursor: str | None) -> Page:
        return await newest_first(self.store.event_endpoints, visible_to(principal, {}), limit, cursor)

    async def update(self, principal: Principal, endpoint_id: str, data: dict) -> dict:
        endpoint = await self.get(principal, endpoint_id)
        now = self.clock.now()
        changes: dict = {"updated_at": now}
        for name in ("url", "description"):
            if name in data:
                changes[name] = data[name]
        if "types" in data:
            changes["types"] = _types(data["types"])
        if data.get("enabled") is True and not endpoint["enabled"]:
            changes.update(enabled=True, failures=0, failing_since=None, retry_at=now, disabled_reason=None)
        elif data.get("enabled") is False and endpoint["enabled"]:
            who = (
                "an admin" if principal.role is Role.ADMIN and endpoint["author"]["id"] != principal.id else "its owner"
            )
            changes.update(enabled=False, disabled_reason=f"disabled by {who}")
        await self.store.event_endpoints.update_one({"_id": endpoint["_id"]}, {"$set": changes})
        return {**endpoint, **changes}

    async def delete(self, principal: Principal, endpoint_id: str) -> None:
        endpoint = await self.get(principal, endpoint_id)
        await self.store.event_endpoints.delete_one({"_id": endpoint["_id"]})
        await self.store.event_attempts.delete_many({"endpoint_id": endpoint["_id"]})

    async def rotate(self, principal: Principal, endpoint_id: str, grace_seconds: int) -> tuple[dict, str]:
        """A new secret (shown only now); the ones in force stay valid `grace_seconds` more."""
        if grace_seconds > self.settings.event_secret_grace_max:
            raise Invalid.field("grace_seconds", f"must be at most {self.settings.event_secret_grace_max}")
        endpoint = await self.get(principal, endpoint_id)
        now = self.clock.now()
        until = now + timedelta(seconds=grace_seconds)
        # The newest secret in force stays for the grace period; older ones end now (a POST carries two at most).
        newest = in_force(endpoint.get("signing", []), now)[-1:]
        kept = [{**s, "until": min(s["until"], until) if s.get("until") else until} for s in newest]
        nonce = secrets.token_hex(16)
        signing = [*kept, {"nonce": nonce, "until": None, "created_at": now}]
        await self.store.event_endpoints.update_one(
            {"_id": endpoint["_id"]}, {"$set": {"signing": signing, "updated_at": now}}
        )
        return {**endpoint, "signing": signing, "updated_at": now}, self.secret(nonce)

    async def replay(self, principal: Principal, endpoint_id: str, since: datetime) -> dict:
        """Send the endpoint's events since `since` again (same ids): its cursor goes back there. Audited."""
        endpoint = await self.get(principal, endpoint_id)
        now = self.clock.now()
        if since > now:
            raise Invalid.field("since", "must not be in the future")
        last = endpoint.get("replayed_at")
        if last is not None and now - last < REPLAY_EVERY:
            raise Conflict(
                f"This endpoint was replayed less than {REPLAY_EVERY.seconds} s ago; try again in a minute",
                {"since": ["one replay a minute"]},
            )
        cursor = floor_id(since.timestamp() - 1)
        changes = {"cursor": min(cursor, endpoint["cursor"]), "retry_at": now, "replayed_at": now, "updated_at": now}
        await self.store.event_endpoints.update_one({"_id": endpoint["_id"]}, {"$set": changes})
        await self.store.audit.insert_one(
            {
                "at": now,
                "actor": principal.as_author(),
                "action": "event replay",
                "endpoint_id": str(endpoint["_id"]),
                "since": since,
            }
        )
        return {**endpoint, **changes}

    async def attempts(self, endpoint_id: ObjectId, limit: int = ATTEMPTS_SHOWN) -> list[dict]:
        found = self.store.event_attempts.find({"endpoint_id": endpoint_id})
        return await found.sort("_id", -1).limit(limit).to_list(limit)


class EventSender:
    """POSTs each enabled endpoint's events past its cursor (module docstring)."""

    def __init__(
        self,
        endpoints: EventEndpoints,
        event_log: EventLog,
        http: OutboundHTTP,
        settings: Settings,
        clock: Clock,
        lease=None,
    ):
        self.endpoints = endpoints
        self.store = endpoints.store
        self.event_log = event_log
        self.http = http
        self.settings = settings
        self.clock = clock
        self.lease = lease
        self._tasks: dict[ObjectId, asyncio.Task] = {}
        # Per endpoint, (cursor, id): every event before the id was read past that cursor and none waited,
        # so the next read starts there (an idle endpoint's read does not walk from its last event on).
        self._scanned: dict[ObjectId, tuple[ObjectId, ObjectId]] = {}
        # Per author, the requests in flight to their endpoints: one caller's slow receivers cannot take
        # the whole HTTP client (EVENT_CONCURRENCY each).
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def run(self) -> int:
        """One run: each enabled endpoint whose retry time came gets a task of its own (one slow receiver
        holds up no other), unless its last one still runs; returns how many were started."""
        if self.lease is not None and not await self.lease.take():
            return 0
        self._tasks = {i: task for i, task in self._tasks.items() if not task.done()}  # catch_up raises nothing
        due = await self.store.event_endpoints.find({"enabled": True, "retry_at": {"$lte": self.clock.now()}}).to_list(
            None
        )
        known = {endpoint["_id"] for endpoint in due} | set(self._tasks)
        self._scanned = {i: scanned for i, scanned in self._scanned.items() if i in known}
        started = 0
        for endpoint in due:
            if endpoint["_id"] not in self._tasks:
                self._tasks[endpoint["_id"]] = asyncio.get_running_loop().create_task(self.catch_up(endpoint))
                started += 1
        return started

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def catch_up(self, endpoint: dict) -> int:
        """Rounds for one endpoint until it is caught up, fails, or had ROUND_SECONDS."""
        acknowledged = 0
        started = time.monotonic()
        endpoint_id = endpoint["_id"]
        current: dict | None = endpoint
        try:
            while current is not None and time.monotonic() - started < ROUND_SECONDS:
                taken, more = await self.round(current)
                acknowledged += taken
                if not more:
                    break
                current = await self.store.event_endpoints.find_one({"_id": endpoint_id, "enabled": True})
        except Exception:
            log.warning("event endpoint %s: round failed, tried again next run", endpoint_id, exc_info=True)
        return acknowledged

    async def round(self, endpoint: dict) -> tuple[int, bool]:
        """POST the next events; (how many were acknowledged, whether a full batch went through)."""
        batch = self.settings.event_batch
        now = self.clock.now()
        start = endpoint["cursor"]
        scanned = self._scanned.get(endpoint["_id"])
        if scanned is not None and scanned[0] == start:
            start = max(start, scanned[1])
        # The event log records the newest id it gave out after storing it: every event up to that one is
        # stored, so a read that finds none past the cursor need not look below it again.
        published = ((await self.store.meta.find_one({"_id": STATE_ID}, {"last_id": 1})) or {}).get("last_id")
        events = await self.event_log.by_author(endpoint["author"], start, endpoint["types"], batch)
        if not events:
            if published is not None and published > start:
                self._scanned[endpoint["_id"]] = (endpoint["cursor"], published)
            return 0, False
        keys = self.endpoints.secrets_in_force(endpoint, now)
        author = endpoint["author"]
        slots = self._slots.setdefault(
            f"{author['kind']}:{author['id']}", asyncio.Semaphore(self.settings.event_concurrency)
        )

        failing = asyncio.Event()

        async def post(event: dict) -> tuple[bool, int | None, str | None, float] | None:
            async with slots:
                if failing.is_set():  # past the first failure the cursor cannot move: not sent this round
                    return None
                result = await self._post(endpoint, event, keys)
                if not result[0]:
                    failing.set()
                return result

        posted = await asyncio.gather(*(post(event) for event in events))
        acknowledged = 0
        for result in posted:
            if result is None or not result[0]:
                break
            acknowledged += 1
        sent = [(event, result) for event, result in zip(events, posted, strict=True) if result is not None]
        answered = time.time()
        for event, (ok, *_) in sent:
            EVENT_POSTS.labels("acknowledged" if ok else "failed").inc()
            if ok:
                EVENT_LAG_SECONDS.observe(max(0.0, answered - event["at"].timestamp()))
        failed = [(event, result) for event, result in sent if not result[0]]
        attempts = [
            {
                "endpoint_id": endpoint["_id"],
                "at": now,
                "event_id": str(event["_id"]),
                "type": event["type"],
                "ok": False,
                "status": status,
                "error": error,
                "seconds": round(seconds, 3),
                "expires_at": now + timedelta(days=self.settings.events_days),
            }
            for event, (_ok, status, error, seconds) in failed
        ]
        done = [event for event, result in sent if result[0]]
        if done:
            attempts.append(
                {
                    "endpoint_id": endpoint["_id"],
                    "at": now,
                    "ok": True,
                    "events": len(done),
                    "first_event_id": str(done[0]["_id"]),
                    "last_event_id": str(done[-1]["_id"]),
                    "expires_at": now + timedelta(days=self.settings.events_days),
                }
            )
        await self.store.event_attempts.insert_many(attempts)
        changes: dict = {"updated_at": now}
        if acknowledged:
            changes["cursor"] = events[acknowledged - 1]["_id"]
            changes["last_success_at"] = now
        if not failed:
            changes.update(failures=0, failing_since=None, retry_at=now, last_error=None)
        else:
            _event, (_ok, status, error, _seconds) = failed[0]
            failures = endpoint.get("failures", 0) + 1
            failing_since = endpoint.get("failing_since") or now
            delay = min(self.settings.event_retry_first * 2 ** (failures - 1), self.settings.event_retry_max)
            changes.update(
                failures=failures,
                failing_since=failing_since,
                retry_at=now + timedelta(seconds=delay),
                last_error=f"HTTP {status}" if status else error,
            )
            if (now - failing_since).total_seconds() >= self.settings.event_disable_after:
                changes.update(enabled=False, disabled_reason=f"failing since {failing_since.isoformat()}")
                log.warning("event endpoint %s disabled: failing since %s", endpoint["_id"], failing_since)
        # Guarded by the cursor read: a replay or an edit in between wins, and the next round starts from it.
        await self.store.event_endpoints.update_one(
            {"_id": endpoint["_id"], "cursor": endpoint["cursor"]}, {"$set": changes}
        )
        return acknowledged, not failed and len(posted) == batch

    async def _post(self, endpoint: dict, event: dict, keys: list[str]) -> tuple[bool, int | None, str | None, float]:
        """(acknowledged, HTTP status, error, seconds)."""
        body = json.dumps(event_body(event), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(event["_id"]),
            "Notifier-Event-Id": str(event["_id"]),
            "Notifier-Event-Type": event["type"],
            SIGNATURE_HEADER: signature_header(keys, int(time.time()), body),
            "User-Agent": "notifier-events",
        }
        timeout = self.settings.http_timeout
        request = HTTPRequest(
            endpoint["url"], method="POST", body=body, headers=headers, request_timeout=timeout, connect_timeout=timeout
        )
        started = time.monotonic()
        try:
            response = await self.http.fetch(request)
            return 200 <= response.code < 300, response.code, None, time.monotonic() - started
        except HTTPClientError as exc:
            return False, exc.code if exc.code != 599 else None, str(exc)[:ERROR_LENGTH], time.monotonic() - started
        except DestinationRefused as exc:
            # The detail (what the host resolves to) is for the log only: it would map internal names.
            log.info("event endpoint %s refused: %s", endpoint["_id"], exc.detail)
            return False, None, "destination refused by the outbound policy", time.monotonic() - started
        except Exception as exc:  # a network error: a failure of this endpoint like any other
            return False, None, f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH], time.monotonic() - started
