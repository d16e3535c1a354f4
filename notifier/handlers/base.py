"""The HTTP edge: request parsing, authentication, access checks, and the one mapping of errors to HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import tornado.httputil
import tornado.web
from marshmallow import Schema, ValidationError
from tornado.http1connection import HTTP1Connection

from ..access import PUBLIC, Principal, allowed, refusal
from ..errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    TooManyAttempts,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    as_domain_error,
)
from ..logs import begin_request

log = logging.getLogger(__name__)

ERROR_STATUS: list[tuple[type[DomainError], int]] = [
    (Invalid, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (TooManyAttempts, 429),
    (Unavailable, 503),
]
WWW_AUTHENTICATE = 'Basic realm="notifier", Bearer realm="notifier"'
# A streamed body is counted against its handler's own limit as it arrives; tornado's ceiling must never trip
# first, since it answers an oversized chunk with a bare 400 instead of the 413 the handler gives.
UNCOUNTED_CEILING = 2**62
MAX_JSON_DEPTH = 32


def load(schema: type[Schema], data: Any, what: str = "request body") -> dict:
    """Validate input with a marshmallow schema; field errors become one Invalid naming the fields."""
    try:
        return schema().load(data)
    except ValidationError as exc:
        raise Invalid(f"Invalid {what}", exc.normalized_messages()) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """A request body as JSON: valid UTF-8, standard JSON (no NaN), nested at most MAX_JSON_DEPTH deep, and
    no string holding a lone surrogate (`"\\ud800"`), which nothing downstream could store or encode."""
    problem: str | None
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        data = None
        problem = f"is nested deeper than {MAX_JSON_DEPTH} levels"
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"Request body is not valid JSON: {exc}", {"body": ["is not valid JSON"]}) from None
    else:
        problem = _json_problem(data)
    if problem:
        raise Invalid(f"Request body {problem}", {"body": [problem]})
    return data


def _json_problem(data: Any) -> str | None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"is nested deeper than {MAX_JSON_DEPTH} levels"
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "has a string that is not valid Unicode (a lone surrogate such as \\ud800)"
    return None


def decode_query(arguments: dict[str, list[bytes]]) -> dict[str, str]:
    """Query parameters as text (the last value of a repeated one); invalid UTF-8 is a 400 naming it."""
    decoded = {}
    for name, values in arguments.items():
        try:
            decoded[name] = values[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid.field(name, "is not valid UTF-8") from None
    return decoded


def error_status(error: DomainError) -> int:
    for kind, status in ERROR_STATUS:
        if isinstance(error, kind):
            return status
    return 400


@dataclass(frozen=True)
class Endpoint:
    """What a handler method accepts and returns, who may call it; also the source of the OpenAPI document."""

    access: str
    summary: str
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    response: type[Schema] | None = None
    status: int = 200
    many: bool = False
    tags: tuple[str, ...] = ()
    errors: tuple[int, ...] = field(default=())
    also: tuple[int, ...] = ()  # other success statuses (a PUT that creates answers 201)
    produces: str = ""  # a success that is not JSON (an event stream): its media type


def endpoint(access: str, summary: str, **options: Any):
    def decorate(method):
        method.endpoint = Endpoint(access, summary, **options)
        return method

    return decorate


# What each kind of answer may load. Every answer, whatever its kind, refuses sniffing and framing.
CSP_NOTHING = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'"  # JSON, files, redirects
CSP_ADMIN = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The public pages (unsubscribe, their errors) run no script; their only style is inline in the page.
CSP_PUBLIC_PAGE = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# ReDoc: its vendored script, the styles it injects, the spec it fetches, the blob: worker it starts.
CSP_REDOC = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; frame-ancestors 'none'"
)


class _Answer(Protocol):
    """What SecurityHeaders needs of the tornado handler it is mixed into."""

    content_security_policy: str
    referrer_policy: str

    def set_header(self, name: str, value: str) -> None: ...


class SecurityHeaders:
    """The one place the security headers are set; a handler class picks its policy and referrer policy."""

    content_security_policy = CSP_NOTHING
    referrer_policy = "same-origin"

    def set_default_headers(self: _Answer) -> None:
        self.set_header("Content-Security-Policy", self.content_security_policy)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", self.referrer_policy)


class BaseHandler(SecurityHeaders, tornado.web.RequestHandler):
    def prepare(self) -> Awaitable[None] | None:
        self.begin_request()
        return None

    def begin_request(self) -> None:
        """Tag this request's logs, and the notifications it creates, with its id (echoed back)."""
        self.set_header("X-Request-Id", begin_request(self.request.headers.get("X-Request-Id")))

    @property
    def ctx(self):
        """The process's services and clients (notifier.context.Context), created once at startup."""
        return self.application.settings["ctx"]

    def log_exception(self, typ, value, tb) -> None:
        if as_domain_error(value) is not None:
            log.info("%s %s -> %s: %s", self.request.method, self.request.uri, type(value).__name__, value)
            return
        super().log_exception(typ, value, tb)


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def says_json(headers: tornado.httputil.HTTPHeaders) -> bool:
    """Whether the request's Content-Type is JSON: application/json or a `+json` type, any parameters."""
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def refuse_cross_site_write(method: str, authorization: str | None, headers: tornado.httputil.HTTPHeaders) -> None:
    """A browser attaches cached HTTP Basic credentials to any request, even one another site makes it
    send; it attaches Bearer and app credentials never (the API reads no cookie). Another site can only
    make it send "simple" requests: no JSON Content-Type, no custom header. So a write with Basic
    credentials must carry one of them."""
    if method not in WRITES or not authorization or authorization.strip().split(None, 1)[0].lower() != "basic":
        return
    if says_json(headers) or "X-Requested-With" in headers:
        return
    raise Forbidden(
        "A write with HTTP Basic credentials must send Content-Type: application/json (even without "
        "a body) or an X-Requested-With header, so that no other site can make a browser send it",
        {"Content-Type": ["must be application/json, or send X-Requested-With"]},
    )


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body is larger than {limit} bytes", {"body": [f"must be at most {limit} bytes"]})


class StreamedBody(BaseHandler):
    """A body received piece by piece (with @stream_request_body) and refused past the handler's limit: from
    Content-Length before any of it is read, or as soon as the count of a chunked one passes the limit."""

    _body_limit = 0  # no body at all until prepare() sets the route's limit
    _received = 0
    _refused = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._chunks: list[bytes] = []
        super().__init__(*args, **kwargs)

    def limit_body(self, limit: int) -> None:
        self._body_limit = limit
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise too_large(limit)
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):  # the only kind tornado's HTTPServer makes
            connection.set_max_body_size(UNCOUNTED_CEILING)

    def data_received(self, chunk: bytes) -> None:
        if self._refused:
            return
        self._received += len(chunk)
        if self._received > self._body_limit:
            # Raising here would reach tornado's connection, not this handler: answer now; tornado then
            # stops delivering the body and closes the connection once the answer is out.
            self._refused = True
            error = too_large(self._body_limit)
            self.send_error(error_status(error), exc_info=(type(error), error, None))
            return
        self._chunks.append(chunk)


@tornado.web.stream_request_body
class APIHandler(StreamedBody):
    """JSON in, JSON out. Bodies are streamed so oversized or unauthenticated requests are refused unread."""

    principal: Principal | None = None
    endpoint: Endpoint  # what this request's method declared (prepare() refuses a method without one)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        """The API authenticates every request by its Authorization header, never by cookie: no CSRF."""

    @property
    def caller(self) -> Principal:
        """The authenticated caller of an endpoint that is not PUBLIC (prepare() refused anyone else)."""
        if self.principal is None:
            raise Unauthenticated("Authentication required")
        return self.principal

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller, from the Authorization header (None without one)."""
        return await self.ctx.auth.authenticate(authorization, self.request.remote_ip)

    def _endpoint(self) -> Endpoint:
        """What this request's method declared with @endpoint; a method without one is a 405."""
        method = getattr(self, (self.request.method or "").lower(), None)
        declared = getattr(method, "endpoint", None)
        if not isinstance(declared, Endpoint):
            raise tornado.web.HTTPError(405)
        return declared

    async def prepare(self) -> None:
        self.begin_request()
        self.endpoint = endpoint = self._endpoint()
        length = self.request.headers.get("Content-Length")
        settings = self.ctx.settings
        self.limit_body(settings.max_form_bytes if endpoint.access == PUBLIC else settings.max_body_bytes)
        if endpoint.body is not None and (length not in (None, "0") or "Transfer-Encoding" in self.request.headers):
            if not says_json(self.request.headers):
                raise UnsupportedMediaType(
                    "Request body must be JSON (Content-Type: application/json)",
                    {"Content-Type": ["must be application/json"]},
                )
        if endpoint.access == PUBLIC:
            return  # whatever Authorization header comes along is not looked at
        authorization = self.request.headers.get("Authorization")
        self.principal = await self.authenticate(authorization)
        refuse_cross_site_write(self.request.method or "", authorization, self.request.headers)
        if not allowed(endpoint.access, self.principal):
            if self.principal is None:
                raise Unauthenticated("Authentication required")
            raise Forbidden(refusal(endpoint.access, self.principal))

    # --- input ---

    def load_body(self, optional: bool = False) -> dict:
        """The body, loaded through the endpoint's schema; an `optional` body may be empty (read as `{}`)."""
        schema = self.endpoint.body
        if schema is None:
            raise TypeError(f"{type(self).__name__}.{self.request.method} declares no body schema")
        raw = b"".join(self._chunks)
        if not raw.strip() and optional:
            return load(schema, {})
        if not raw.strip():
            raise Invalid("Request body is required", {"body": ["must be a JSON object"]})
        data = parse_json(raw)
        if not isinstance(data, dict):
            raise Invalid("Request body must be a JSON object", {"body": ["must be a JSON object"]})
        return load(schema, data)

    def load_query(self) -> dict:
        schema = self.endpoint.query
        if schema is None:
            raise TypeError(f"{type(self).__name__}.{self.request.method} declares no query schema")
        return load(schema, decode_query(self.request.query_arguments), "query parameters")

    # --- output ---

    def flag(self, name: str) -> bool:
        """A true/false query parameter (absent: false); anything else is a 400 naming it."""
        raw = self.get_query_argument(name, "false").lower()
        if raw not in ("true", "false", "1", "0"):
            raise Invalid.field(name, "must be true or false")
        return raw in ("true", "1")

    def respond_as(self, schema: type, data: Any, status: int = 200) -> None:
        """Finish with `data` dumped through `schema`: an endpoint's other answer (a dry run's plan, say)."""
        self.set_status(status)
        self.finish(json.dumps(schema().dump(data), separators=(",", ":")))

    def respond(self, data: Any = None, status: int | None = None) -> None:
        """Finish with `data` dumped through the endpoint's response schema (no body when None)."""
        endpoint = self.endpoint
        self.set_status(status or endpoint.status)
        if data is None:
            self.finish()
            return
        if endpoint.response is not None:
            data = endpoint.response().dump(data, many=endpoint.many)
        self.finish(json.dumps(data, separators=(",", ":")))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = as_domain_error(exc) if exc is not None else None
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        if error is not None:
            status_code = error_status(error)
            self.set_status(status_code)
            if isinstance(error, Unauthenticated):
                self.set_header("WWW-Authenticate", WWW_AUTHENTICATE)
            if isinstance(error, (Unavailable, TooManyAttempts)):
                self.set_header("Retry-After", str(error.retry_after))
            body = {"message": error.message, "errors": error.errors}
        elif isinstance(exc, tornado.web.HTTPError):
            body = {"message": exc.log_message or self._reason, "errors": {}}
        else:
            body = {"message": "Internal server error", "errors": {}}
        self.finish(json.dumps(body))


class PageHandler(BaseHandler):
    """HTML pages: errors render as a page with the same status mapping as the API."""

    content_security_policy = CSP_PUBLIC_PAGE

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = as_domain_error(exc) if exc is not None else None
        message = "Something went wrong on our side."
        if error is not None:
            status_code = error_status(error)
            self.set_status(status_code)
            message = error.message
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message or self._reason
        self.render("error.html", status=status_code, message=message)


@tornado.web.stream_request_body
class FormPageHandler(StreamedBody, PageHandler):
    """Pages with forms, streamed in so that an oversized form is refused before it is read.

    Tornado checks the XSRF token before the body arrives, and the token is in the body: post() checks it once
    the form is in, then calls the page's submit(). Pages implement submit(), never post(), so none skips it.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "post" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must implement submit(): post() checks the XSRF token first")

    def check_xsrf_cookie(self) -> None:
        """Done in post(), once the body with the `_xsrf` field has arrived."""

    def parse_form(self) -> None:
        """The received body as body arguments and files, as tornado would have parsed it unstreamed."""
        self.request.body = b"".join(self._chunks)
        try:
            tornado.httputil.parse_body_arguments(
                self.request.headers.get("Content-Type", ""),
                self.request.body,
                self.request.body_arguments,
                self.request.files,
                self.request.headers,
            )
        except tornado.httputil.HTTPInputError as exc:
            raise Invalid(f"The form could not be read: {exc}") from None
        for name, values in self.request.body_arguments.items():
            self.request.arguments.setdefault(name, []).extend(values)

    async def post(self, *args: Any, **kwargs: Any) -> None:
        submit = getattr(self, "submit", None)
        if submit is None:
            raise tornado.web.HTTPError(405)
        self.parse_form()
        tornado.web.RequestHandler.check_xsrf_cookie(self)
        result = submit(*args, **kwargs)
        if result is not None:
            await result


class NotFoundHandler(APIHandler):
    """JSON 404 for any path no route matches."""

    async def prepare(self) -> None:
        self.begin_request()
        raise NotFound(f"No such path: {self.request.path}")


class StaticFiles(SecurityHeaders, tornado.web.StaticFileHandler):
    """Static files; a path no file can have (a NUL byte) is a 404, not an error from the file system."""

    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)


class Redirect(SecurityHeaders, tornado.web.RedirectHandler):
    """A fixed redirect, with the security headers every answer carries."""
