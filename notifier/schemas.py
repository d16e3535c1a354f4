"""Marshmallow schemas at the API boundary: `load()` validates input (unknown fields rejected), `dump()` shapes output.

The OpenAPI document is generated from these same schemas.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from bson import ObjectId
from bson.errors import InvalidId
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from .access import GRANTABLE
from .authenticator import RESERVED_LOGINS
from .domain import CHANNELS, CONTROL_CHARACTERS, STATUSES
from .outbound import DestinationRefused, check_url
from .recurrence import check_cron, check_timezone
from .services.event_endpoints import in_force
from .services.events import EVENT_TYPES
from .services.fanout import in_progress, recipients_stored
from .services.quiet_hours import DAYS as QUIET_DAYS
from .services.users import RESERVED_USER_IDS, USER_ID_RE

MAX_PAGE = 200


class Pattern(validate.Regexp):
    """A regular expression the whole value must match: `$` alone lets a trailing newline through."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


USER_ID = validate.And(
    Pattern(USER_ID_RE, error="must be 1-128 characters: letters, digits and . _ : @ + - (not starting with a symbol)"),
    validate.NoneOf(RESERVED_USER_IDS, error="is reserved"),
)
LOGIN = validate.And(
    Pattern(r"^[a-z0-9][a-z0-9._\-]{2,63}$", error="must be 3-64 lowercase letters, digits, '.', '_' or '-'"),
    validate.NoneOf(RESERVED_LOGINS, error="is a reserved word"),
)


def no_control_characters(value: str | None) -> None:
    """One-line values (names, addresses, titles) end up in mail headers: no line breaks or other controls."""
    if value is not None and CONTROL_CHARACTERS.search(value):
        raise ValidationError("must not contain line breaks or other control characters")


def sendable_url(url: str | None) -> None:
    """The send path's own rule for a URL's form (scheme, host, port, no user:password@); the addresses its
    host resolves to are checked when sending, since DNS can change in between."""
    if url is None:
        return
    try:
        check_url(url)
    except DestinationRefused as exc:
        raise ValidationError(f"is not a usable URL: {exc.detail}") from None


def UserId(**kwargs) -> fields.Str:
    return fields.Str(validate=USER_ID, **kwargs)


def Id(**kwargs) -> fields.Str:
    return fields.Str(attribute="_id", dump_only=True, **kwargs)


def StrictInt(**kwargs) -> fields.Int:
    """A JSON integer: 1.5, "1" and true are refused rather than truncated or cast."""
    return fields.Int(strict=True, **kwargs)


def _valid_timezone(value: str) -> None:
    if reason := check_timezone(value):
        raise ValidationError(reason)


def _valid_cron(value: str) -> None:
    if reason := check_cron(value):
        raise ValidationError(reason)


def TimeZone(**kwargs) -> fields.Str:
    """An IANA zone name known to the zone database (at most 64 characters, never read as a path)."""
    return fields.Str(validate=_valid_timezone, **kwargs)


def Cron(**kwargs) -> fields.Str:
    """A five-field cron expression (minute hour day-of-month month day-of-week; no seconds or year)."""
    return fields.Str(validate=_valid_cron, **kwargs)


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class BoundedDateTime(fields.AwareDateTime):
    """An ISO 8601 instant from 1970 to 2199, UTC when no offset is given; always timezone-aware."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=UTC, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            moment = super()._deserialize(value, attr, data, **kwargs)
            in_range = EARLIEST <= moment < LATEST
        except OverflowError:
            in_range = False
        if not in_range:
            raise ValidationError("must be between 1970-01-01 and 2199-12-31 (UTC)")
        return moment


# --- common ----------------------------------------------------------------------------------------


class ErrorSchema(Schema):
    message = fields.Str(required=True)
    errors = fields.Dict(keys=fields.Str(), values=fields.Raw(), metadata={"description": "Messages by field name"})


class PageQuerySchema(Schema):
    limit = fields.Int(load_default=50, validate=validate.Range(1, MAX_PAGE))
    cursor = fields.Str(
        validate=validate.Length(1, 200), metadata={"description": "`next_cursor` of the previous page"}
    )


def page_of(item: type[Schema]) -> type[Schema]:
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.Str(allow_none=True, required=True),
        },
        name=item.__name__.replace("Schema", "") + "PageSchema",
    )


# --- auth ------------------------------------------------------------------------------------------


class TokenRequestSchema(Schema):
    username = fields.Str(required=True, validate=validate.Length(1, 150))
    password = fields.Str(required=True, validate=validate.Length(1, 1024), load_only=True)


class TokenSchema(Schema):
    access_token = fields.Str(required=True)
    token_type = fields.Str(required=True)
    expires_in = fields.Int(required=True)


# --- notifications ---------------------------------------------------------------------------------


class AuthorSchema(Schema):
    kind = fields.Str()
    id = fields.Str()
    name = fields.Str()


class NotificationContentSchema(Schema):
    title = fields.Str(
        required=True,
        validate=[validate.Length(1, 200), no_control_characters],
        metadata={"description": "Subject; may use {{ placeholders }}"},
    )
    text = fields.Str(
        required=True,
        validate=validate.Length(1, 20000),
        metadata={
            "description": "Body; placeholders: {{ name }}, {{ user_id }}, {{ email }}, "
            "{{ unsubscribe_url }} and the keys of `variables`"
        },
    )
    channel = fields.Str(required=True, validate=validate.OneOf(CHANNELS))
    is_express = fields.Bool(load_default=False, metadata={"description": "Urgent: own queue, first"})
    content_id = fields.Str(allow_none=True, load_default=None, validate=validate.Length(1, 200))
    variables = fields.Dict(
        keys=fields.Str(validate=Pattern(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")),
        values=fields.Str(validate=[validate.Length(0, 2000), no_control_characters]),
        load_default=dict,
        validate=validate.Length(max=50),
    )


class LocalTimeSchema(Schema):
    date = fields.Date(
        load_default=None, metadata={"description": "The recipient's local date; without it, the next such time"}
    )
    time = fields.Time(required=True, metadata={"description": "The recipient's local time, e.g. 09:00"})


class NotificationCreateSchema(NotificationContentSchema):
    recipients = fields.List(
        UserId(),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "User ids; duplicates are ignored"},
    )
    send_at = fields.AwareDateTime(
        load_default=None,
        metadata={
            "description": "Send at this instant (with its UTC offset), not before; a past one means now. "
            "Until then the deliveries are `scheduled`; at most 366 days ahead"
        },
    )
    deliver_at_local = fields.Nested(
        LocalTimeSchema,
        load_default=None,
        metadata={
            "description": "Send at this local time of each recipient (their user's `timezone`, else "
            "DEFAULT_TIMEZONE), by the schedules' DST rules; instead of send_at"
        },
    )
    respect_quiet_hours = fields.Bool(
        load_default=None,
        metadata={
            "description": "Wait out each recipient's quiet hours (deferred to their end); default: yes, "
            "except for express notifications"
        },
    )
    expires_at = fields.AwareDateTime(
        load_default=None,
        metadata={
            "description": "Not worth sending after this instant: a delivery not sent by then ends `expired` "
            "(in a backlog, scheduled, deferred or between retries); after now and after send_at"
        },
    )
    cancellation_key = fields.Str(
        load_default=None,
        validate=[validate.Length(1, 255), no_control_characters],
        metadata={
            "description": "Your name for this notification (or a group of them, e.g. an order id): "
            "`POST /api/v1/notifications/cancel` with it cancels every notification you created with it"
        },
    )


class NotificationSchema(Schema):
    id = Id()
    title = fields.Str()
    text = fields.Str()
    channel = fields.Str()
    is_express = fields.Bool()
    content_id = fields.Str(allow_none=True)
    variables = fields.Dict(keys=fields.Str(), values=fields.Str())
    author = fields.Nested(AuthorSchema)
    recipient_count = fields.Int()
    created_at = fields.DateTime()
    send_at = fields.DateTime(allow_none=True, dump_default=None)
    deliver_at_local = fields.Dict(allow_none=True, dump_default=None)
    expires_at = fields.DateTime(allow_none=True, dump_default=None)
    cancellation_key = fields.Str(allow_none=True, dump_default=None)
    cancelled_at = fields.DateTime(
        allow_none=True,
        dump_default=None,
        metadata={"description": "When the whole notification was cancelled (null: it was not)"},
    )
    fanout = fields.Function(
        lambda n: "in_progress" if in_progress(n) else "done",
        metadata={
            "type": "string",
            "enum": ["in_progress", "done"],
            "description": "`in_progress` while the deliveries of a big create are being stored in the "
            "background (the create answered 202); `done` once every recipient has its delivery",
        },
    )
    recipients_stored = fields.Function(
        recipients_stored,
        metadata={"type": "integer", "description": "Recipients whose delivery is stored so far"},
    )


class NotificationDetailSchema(NotificationSchema):
    counts = fields.Dict(keys=fields.Str(), values=fields.Int(), metadata={"description": "Deliveries by status"})
    reasons = fields.Dict(
        keys=fields.Str(), values=fields.Int(), metadata={"description": "Skipped and failed deliveries by reason"}
    )


class NotificationListQuerySchema(PageQuerySchema):
    channel = fields.Str(validate=validate.OneOf(CHANNELS))
    is_express = fields.Bool()
    author = fields.Str(validate=validate.Length(1, 64), metadata={"description": "Author id"})
    q = fields.Str(validate=validate.Length(1, 200), metadata={"description": "Text in the title"})
    created_after = BoundedDateTime()
    created_before = BoundedDateTime()


class RecipientsSchema(Schema):
    recipients = fields.List(UserId(), required=True, validate=validate.Length(min=1))


class RecipientsAddedSchema(Schema):
    added = fields.Int()
    already_present = fields.Int()


class CancelSchema(Schema):
    user_ids = fields.List(
        UserId(),
        load_default=None,
        validate=validate.Length(min=1),
        metadata={"description": "Cancel for these recipients only; without it (or with an empty body), for all"},
    )


class CancelByKeySchema(Schema):
    cancellation_key = fields.Str(required=True, validate=[validate.Length(1, 255), no_control_characters])


_CANCELLED = {
    "cancelled": "Deliveries cancelled by this call: none of them is ever sent",
    "already_sent": "Deliveries sent before the cancel",
    "in_flight": "Deliveries a consumer was sending at that instant: that attempt ends as it ends (sent, or "
    "failed), and none of them is tried again",
    "already_done": "Deliveries failed or skipped before the cancel",
}


class CancelledSchema(Schema):
    notification_id = fields.Str()
    cancelled = fields.Int(metadata={"description": _CANCELLED["cancelled"]})
    already_sent = fields.Int(metadata={"description": _CANCELLED["already_sent"]})
    in_flight = fields.Int(metadata={"description": _CANCELLED["in_flight"]})
    already_done = fields.Int(metadata={"description": _CANCELLED["already_done"]})
    already_cancelled = fields.Int(metadata={"description": "Deliveries an earlier cancel took"})


class CancelledByKeySchema(Schema):
    notifications = fields.Int(metadata={"description": "Notifications cancelled by this call"})
    cancelled = fields.Int(metadata={"description": _CANCELLED["cancelled"]})
    already_sent = fields.Int(metadata={"description": _CANCELLED["already_sent"]})
    in_flight = fields.Int(metadata={"description": _CANCELLED["in_flight"]})
    already_done = fields.Int(metadata={"description": _CANCELLED["already_done"]})
    more = fields.Bool(metadata={"description": "More notifications have this key: call again"})


class DeliverySchema(Schema):
    id = Id()
    notification_id = fields.Str()
    user_id = fields.Str()
    channel = fields.Str()
    occurrence = fields.Str()
    status = fields.Str(validate=validate.OneOf(STATUSES))
    reason = fields.Str(allow_none=True, metadata={"description": "Why it was skipped or failed"})
    is_sent_to_queue = fields.Bool()
    attempts = fields.Int()
    last_error = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    queued_at = fields.DateTime(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)
    read_at = fields.DateTime(allow_none=True)


class PlanItemSchema(Schema):
    user_id = fields.Str()
    delivery_id = fields.Str(allow_none=True, metadata={"description": "null in a dry run"})
    status = fields.Str(metadata={"description": "The delivery's status now (a dry run: as it would be stored)"})
    decision = fields.Str(
        allow_none=True,
        metadata={"enum": ["send", "skip", "defer", "expire"], "description": "What will happen; null once final"},
    )
    reason = fields.Str(
        allow_none=True,
        metadata={
            "description": "Why: now, send_at, local_time, dst_gap, dst_repeat, quiet_hours_end (to send); "
            "unsubscribed, no_contact, invalid_contact (skip); quiet_hours, contacts_unavailable (defer); "
            "expired_before_send, expired_in_quiet_hours (expire); a final delivery's own reason"
        },
    )
    at = fields.DateTime(allow_none=True, metadata={"description": "When, in UTC"})
    local = fields.Str(
        allow_none=True,
        metadata={
            "description": "The same instant in the recipient's zone, with offset (callers who may read contacts)"
        },
    )
    zone = fields.Str(
        allow_none=True,
        metadata={
            "description": "The recipient's time zone (their user's, else DEFAULT_TIMEZONE); null for callers "
            "who may not read contacts"
        },
    )
    dst = fields.Str(allow_none=True, metadata={"description": "dst_gap or dst_repeat when a local time fell in one"})


class RenderedSchema(Schema):
    user_id = fields.Str()
    title = fields.Str()
    text = fields.Str()


class DryRunSchema(Schema):
    dry_run = fields.Constant(True)
    recipient_count = fields.Int()
    summary = fields.Dict(
        keys=fields.Str(), values=fields.Int(), metadata={"description": "Recipients by decision:reason"}
    )
    items = fields.List(fields.Nested(PlanItemSchema), metadata={"description": "The first 100 recipients' plan"})
    sample = fields.List(fields.Nested(RenderedSchema), metadata={"description": "Content for the first three"})


class DeliveryListQuerySchema(PageQuerySchema):
    status = fields.Str(validate=validate.OneOf(STATUSES))
    user_id = UserId()


# --- users -----------------------------------------------------------------------------------------


def _time_of_day(value: str) -> None:
    try:
        time.fromisoformat(value)
    except ValueError:
        raise ValidationError("must be a time of day such as 22:00") from None


class QuietHoursSchema(Schema):
    """A daily window in the user's time zone (services/quiet_hours.py); past midnight when end < start."""

    start = fields.Str(
        required=True,
        validate=[validate.Length(4, 8), _time_of_day],
        metadata={"description": "Local time the window starts, e.g. 22:00"},
    )
    end = fields.Str(
        required=True,
        validate=[validate.Length(4, 8), _time_of_day],
        metadata={"description": "Local time it ends, e.g. 07:00"},
    )
    days = fields.List(
        fields.Str(validate=validate.OneOf(QUIET_DAYS)),
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, 7),
        metadata={"description": "Days a window starts on (mon ... sun); every day when absent"},
    )

    @validates_schema
    def _a_window(self, data, **kwargs):
        if time.fromisoformat(data["start"]) == time.fromisoformat(data["end"]):
            raise ValidationError("must differ from start", "end")

    @post_load
    def _stored(self, data, **kwargs):
        """As stored: times written alike (HH:MM, or HH:MM:SS), days once each in week order."""

        def written(value: str) -> str:
            moment = time.fromisoformat(value)
            return moment.isoformat("seconds" if moment.second else "minutes")

        days = data.get("days")
        return {
            "start": written(data["start"]),
            "end": written(data["end"]),
            "days": [d for d in QUIET_DAYS if d in days] if days else None,
        }


class PreferencesSchema(Schema):
    """A user's own opt-outs and quiet hours; a PUT changes only the fields it sends."""

    unsubscribed_channels = fields.List(fields.Str(validate=validate.OneOf(CHANNELS)), dump_default=list)
    unsubscribed_all = fields.Bool(dump_default=False)
    quiet_hours = fields.Nested(
        QuietHoursSchema,
        allow_none=True,
        dump_default=None,
        metadata={"description": "Nothing non-urgent during this window: it is deferred to its end; null clears"},
    )


class UserWriteSchema(Schema):
    """PUT /users/{id} and each bulk item: only the fields sent change, null clears one, absent ones stay."""

    email = fields.Email(allow_none=True, validate=[validate.Length(max=254), no_control_characters])
    telegram_chat_id = fields.Str(
        allow_none=True,
        validate=Pattern(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$", error="must be a numeric chat id or @channel"),
    )
    webhook_url = fields.Url(
        allow_none=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=[validate.Length(max=2000), sendable_url],
    )
    display_name = fields.Str(allow_none=True, validate=[validate.Length(max=200), no_control_characters])
    timezone = TimeZone(allow_none=True)
    locale = fields.Str(
        allow_none=True,
        validate=Pattern(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$", error="must be a language tag such as en or pt-BR"),
    )
    unsubscribed_channels = fields.List(
        fields.Str(validate=validate.OneOf(CHANNELS)),
        metadata={
            "description": "Admins only (audited): a client application sending it gets 403; users use /me/preferences"
        },
    )
    unsubscribed_all = fields.Bool(metadata={"description": "Admins only (audited), like unsubscribed_channels"})
    quiet_hours = fields.Nested(
        QuietHoursSchema,
        allow_none=True,
        metadata={"description": "Nothing non-urgent during this daily window: deferred to its end; null clears"},
    )


class UserSchema(Schema):
    """A user as the API shows it: what was never set shows as null (or not unsubscribed)."""

    user_id = UserId(dump_only=True)
    email = fields.Str(allow_none=True, dump_default=None)
    telegram_chat_id = fields.Str(allow_none=True, dump_default=None)
    webhook_url = fields.Str(allow_none=True, dump_default=None)
    display_name = fields.Str(allow_none=True, dump_default=None)
    timezone = fields.Str(allow_none=True, dump_default=None)
    locale = fields.Str(allow_none=True, dump_default=None)
    unsubscribed_channels = fields.List(fields.Str(), dump_default=list)
    unsubscribed_all = fields.Bool(dump_default=False)
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True, dump_default=None)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class UserBulkItemSchema(UserWriteSchema):
    user_id = UserId(required=True)


class UsersBulkSchema(Schema):
    users = fields.List(fields.Nested(UserBulkItemSchema), required=True, validate=validate.Length(1, 1000))


class UsersBulkResultSchema(Schema):
    created = fields.Int()
    updated = fields.Int()


class UserListQuerySchema(PageQuerySchema):
    pass


# --- clients ---------------------------------------------------------------------------------------


def Permissions(**kwargs) -> fields.List:
    return fields.List(
        fields.Str(validate=validate.OneOf(GRANTABLE)),
        metadata={
            "description": "What the application may do beyond sending its own notifications: " + ", ".join(GRANTABLE)
        },
        **kwargs,
    )


class ClientCreateSchema(Schema):
    login = fields.Str(required=True, validate=LOGIN)
    name = fields.Str(required=True, validate=[validate.Length(1, 200), no_control_characters])
    permissions = Permissions(load_default=list)


class ClientPermissionsSchema(Schema):
    permissions = Permissions(required=True)


class ClientSchema(Schema):
    id = Id()
    login = fields.Str()
    name = fields.Str()
    active = fields.Bool()
    permissions = fields.List(fields.Str(), dump_default=list)
    created_by = fields.Str()
    created_at = fields.DateTime()


class ClientCreatedSchema(ClientSchema):
    password = fields.Str(metadata={"description": "Shown only in this response"})


# --- status events ---------------------------------------------------------------------------------


def EventTypes(**kwargs) -> fields.List:
    return fields.List(
        fields.Str(validate=validate.OneOf(EVENT_TYPES)),
        validate=validate.Length(min=1),
        metadata={"description": "Event types wanted (default: all): " + ", ".join(EVENT_TYPES)},
        **kwargs,
    )


class EventEndpointCreateSchema(Schema):
    url = fields.Str(required=True, validate=[validate.Length(1, 2000), sendable_url])
    types = EventTypes(load_default=None)
    description = fields.Str(load_default="", validate=[validate.Length(0, 200), no_control_characters])


class EventEndpointUpdateSchema(Schema):
    url = fields.Str(validate=[validate.Length(1, 2000), sendable_url])
    types = EventTypes()
    description = fields.Str(validate=[validate.Length(0, 200), no_control_characters])
    enabled = fields.Bool(metadata={"description": "true enables a disabled endpoint again (its failures reset)"})

    @validates_schema
    def _something(self, data, **kwargs):
        if not data:
            raise ValidationError("give at least one of url, types, description, enabled", "body")


class EventEndpointSchema(Schema):
    id = Id()
    url = fields.Str()
    types = fields.List(fields.Str(), allow_none=True, metadata={"description": "null: every type, later ones too"})
    description = fields.Str()
    enabled = fields.Bool()
    disabled_reason = fields.Str(allow_none=True)
    failures = fields.Int(metadata={"description": "Failed rounds in a row"})
    failing_since = fields.DateTime(allow_none=True)
    retry_at = fields.DateTime(allow_none=True)
    last_success_at = fields.DateTime(allow_none=True)
    last_error = fields.Str(allow_none=True)
    secrets_in_force = fields.Method("_secrets", metadata={"description": "Secrets a POST is signed with now"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()

    def _secrets(self, endpoint) -> list[dict]:
        return [
            {"created_at": s["created_at"].isoformat(), "expires_at": s["until"].isoformat() if s["until"] else None}
            for s in in_force(endpoint.get("signing", []), datetime.now(UTC))
        ]


class EventEndpointCreatedSchema(EventEndpointSchema):
    secret = fields.Str(metadata={"description": "The signing secret: shown only in this response"})


class SecretRotateSchema(Schema):
    grace_seconds = StrictInt(
        load_default=86400,
        validate=validate.Range(min=0),  # at most EVENT_SECRET_GRACE_MAX (the service checks it)
        metadata={"description": "How long the secrets in force stay valid beside the new one"},
    )


class ReplaySchema(Schema):
    since = BoundedDateTime(required=True, metadata={"description": "Send again the events stored since then"})


def _event_id(value: str) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise ValidationError("is not an event id") from None


class EventFeedQuerySchema(Schema):
    after = fields.Str(metadata={"description": "The id of the last event you have (`next_after`)"})
    since = BoundedDateTime(metadata={"description": "Without `after`: events stored since then"})
    types = fields.Str(metadata={"description": "Comma-separated event types (default: all)"})
    limit = fields.Int(load_default=100, validate=validate.Range(1, 500))

    @post_load
    def _parse(self, data, **kwargs):
        if "after" in data and "since" in data:
            raise ValidationError("give after or since, not both", "since")
        if "after" in data:
            try:
                data["after"] = _event_id(data["after"])
            except ValidationError as exc:
                raise ValidationError(exc.messages, "after") from None
        if "types" in data:
            types = [t.strip() for t in data["types"].split(",") if t.strip()]
            unknown = [t for t in types if t not in EVENT_TYPES]
            if unknown or not types:
                raise ValidationError(f"must be among {', '.join(EVENT_TYPES)}", "types")
            data["types"] = types
        return data


class EventSchema(Schema):
    id = fields.Str()
    type = fields.Str()
    created_at = fields.Str(metadata={"description": "When the state change happened"})
    data = fields.Dict()


class EventFeedSchema(Schema):
    items = fields.List(fields.Nested(EventSchema), required=True)
    next_after = fields.Str(
        allow_none=True, required=True, metadata={"description": "`after` for the next call (the last id)"}
    )


# --- end users -------------------------------------------------------------------------------------


class InboxItemSchema(Schema):
    id = Id()
    notification_id = fields.Str()
    channel = fields.Str()
    title = fields.Str()
    text = fields.Str()
    status = fields.Str()
    reason = fields.Str(allow_none=True)
    is_express = fields.Bool()
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)
    read_at = fields.DateTime(allow_none=True)
    seen_at = fields.DateTime(allow_none=True)
    archived_at = fields.DateTime(allow_none=True)


class InboxQuerySchema(PageQuerySchema):
    channel = fields.Str(validate=validate.OneOf(CHANNELS))
    unread = fields.Bool(metadata={"description": "Only items not yet marked read (false: only read ones)"})
    unseen = fields.Bool(metadata={"description": "Only items not yet seen (false: only seen ones)"})
    archived = fields.Bool(metadata={"description": "Only archived items (false: only items not archived)"})


class InboxCountsSchema(Schema):
    total = fields.Int(metadata={"description": "In-app inbox items delivered and not archived"})
    unread = fields.Int(metadata={"description": "Of those, not marked read"})
    unseen = fields.Int(metadata={"description": "Of those, not marked seen"})


class BulkChangeSchema(Schema):
    changed = fields.Int(metadata={"description": "In-app inbox items this changed"})


class StreamTicketSchema(Schema):
    ticket = fields.Str(metadata={"description": "Pass as `?ticket=` to GET /api/v1/me/stream"})
    expires_in = fields.Int(metadata={"description": "Seconds it may still be used to open a stream"})


class StreamQuerySchema(Schema):
    ticket = fields.Str(
        validate=validate.Length(1, 4096),
        metadata={"description": "A ticket from POST /api/v1/me/stream/ticket, instead of an Authorization header"},
    )
    last_event_id = fields.Int(
        validate=validate.Range(0, 2**53),
        metadata={"description": "Resume after this event id (the `Last-Event-ID` header does the same)"},
    )


# --- schedules ------------------------------------------------------------------------------------


class PeriodicitySchema(Schema):
    cron = Cron(
        allow_none=True,
        metadata={
            "description": "Cron expression of 5 fields (minute hour day-of-month "
            "month day-of-week) in `timezone`, e.g. `30 9 * * 1-5`"
        },
    )
    interval_seconds = StrictInt(
        allow_none=True,
        validate=validate.Range(1, 366 * 24 * 3600),
        metadata={
            "description": "Fixed interval of real time (ignores DST); at least SCHEDULE_MIN_INTERVAL (60 s by default)"
        },
    )
    timezone = TimeZone(metadata={"description": "IANA zone, default UTC"})
    start_at = BoundedDateTime(allow_none=True)
    end_at = BoundedDateTime(allow_none=True)
    enabled = fields.Bool()
    misfire_policy = fields.Str(
        validate=validate.OneOf(("skip", "run_once")),
        metadata={
            "description": "Occurrences missed while down: skip them, or fire the latest once within the grace window"
        },
    )
    misfire_grace_seconds = StrictInt(validate=validate.Range(0, 7 * 24 * 3600))
    user_ids = fields.List(UserId(), validate=validate.Length(min=1))


class ScheduleCreateSchema(PeriodicitySchema):
    notification_id = fields.Str(
        validate=validate.Length(1, 64), metadata={"description": "An existing notification to send each time"}
    )
    notification = fields.Nested(
        NotificationContentSchema, metadata={"description": "Or the content of a new one (sent only by the schedule)"}
    )
    user_ids = fields.List(UserId(), required=True, validate=validate.Length(min=1))
    timezone = TimeZone(load_default="UTC")
    enabled = fields.Bool(load_default=True)
    misfire_policy = fields.Str(load_default="run_once", validate=validate.OneOf(("skip", "run_once")))
    misfire_grace_seconds = StrictInt(load_default=3600, validate=validate.Range(0, 7 * 24 * 3600))

    @validates_schema
    def _one_notification(self, data, **_):
        if ("notification_id" in data) == ("notification" in data):
            raise ValidationError("give either notification_id or notification", "notification_id")


class ScheduleSchema(Schema):
    id = Id()
    notification_id = fields.Str()
    user_ids = fields.List(fields.Str())
    cron = fields.Str(allow_none=True)
    interval_seconds = fields.Int(allow_none=True)
    timezone = fields.Str()
    start_at = fields.DateTime(allow_none=True)
    end_at = fields.DateTime(allow_none=True)
    enabled = fields.Bool()
    misfire_policy = fields.Str()
    misfire_grace_seconds = fields.Int()
    next_run_at = fields.DateTime(allow_none=True)
    last_run_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(
        allow_none=True,
        metadata={"description": "When it stopped for good (no further fire time); PATCH it to revive it"},
    )
    end_reason = fields.Str(allow_none=True)
    fired = fields.Int()
    skipped = fields.Int()
    author = fields.Nested(AuthorSchema)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ScheduleListQuerySchema(PageQuerySchema):
    enabled = fields.Bool()
    notification_id = fields.Str(validate=validate.Length(1, 64))


class PreviewQuerySchema(Schema):
    n = fields.Int(load_default=10, validate=validate.Range(1, 100))


class FireTimeSchema(Schema):
    at = fields.Str(metadata={"description": "Local time in the schedule's zone, with its UTC offset"})
    utc = fields.Str()
    utc_offset = fields.Str()


class PreviewSchema(Schema):
    enabled = fields.Bool(metadata={"description": "False: the schedule is disabled and fires at none of these"})
    note = fields.Str(allow_none=True, metadata={"description": "Why the schedule is not firing, if it is not"})
    items = fields.List(fields.Nested(FireTimeSchema))


class ScheduleRunSchema(Schema):
    id = Id()
    at = fields.DateTime()
    status = fields.Str()
    recipients = fields.Int()
    instance = fields.Str()
    claimed_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)


# --- health ----------------------------------------------------------------------------------------


class HealthSchema(Schema):
    status = fields.Str()
    checks = fields.Dict(keys=fields.Str(), values=fields.Str())
