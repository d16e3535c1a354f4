"""Bounded resources at the HTTP edge: body limits checked before a body is read, a separately bounded CSV
upload, 413 for oversized chunked bodies, and timeouts for idle connections and stalled bodies.

Raw sockets against the real server (the `http_server` fixture, as `notifier serve` builds it), so each test
controls exactly what the client has sent when the answer comes back.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ..handlers.admin.conftest import browser, logged_in, text  # noqa: F401 (fixtures)

BODY_LIMIT = 4096
FORM_LIMIT = 2048
UPLOAD_LIMIT = 16384
HUGE = 15 * 1024 * 1024
WAIT = 10  # seconds any answer may take before the test gives up (the point is that one comes at all)


@pytest.fixture
def settings_overrides():
    return {
        "max_body_bytes": BODY_LIMIT,
        "max_form_bytes": FORM_LIMIT,
        "max_upload_bytes": UPLOAD_LIMIT,
        "http_idle_timeout": 0.5,
        "http_body_timeout": 1.0,
    }


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response, as far as the server sent it."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        status_line, *lines = head.decode("latin1").split("\r\n")[:-2]
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
        body = b""
        if "content-length" in headers:
            body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), WAIT)
        return int(status_line.split()[1]), headers, body

    async def closed_by_server(self) -> bool:
        """True once the server has closed the connection (reads end); False if it sends anything else."""
        try:
            return await asyncio.wait_for(self.reader.read(1), WAIT) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def connect(io_loop, http_server, http_port):
    opened = []

    async def open_connection() -> Connection:
        connection = Connection(*await asyncio.open_connection("127.0.0.1", http_port))
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        connection.close()


def request_head(method: str, path: str, **headers: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def cookies(browser) -> str:
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


FORM = "application/x-www-form-urlencoded"


# --- admin forms: small limits, checked before the body is read ---


@pytest.mark.gen_test
async def test_an_oversized_login_form_is_refused_before_its_body_is_sent(connect):
    connection = await connect()
    await connection.send(request_head("POST", "/admin/login", Content_Type=FORM, Content_Length=str(HUGE)))
    status, _, body = await connection.response()  # not one byte of the body has been sent
    assert status == 413 and f"larger than {FORM_LIMIT} bytes" in body.decode()
    assert await connection.closed_by_server()


@pytest.mark.gen_test
async def test_an_unauthenticated_post_to_an_admin_form_is_answered_without_reading_its_body(connect):
    connection = await connect()
    await connection.send(request_head("POST", "/admin/clients", Content_Type=FORM, Content_Length=str(HUGE)))
    status, headers, _ = await connection.response()
    assert status == 302 and headers["location"] == "/admin/login"
    assert await connection.closed_by_server()


@pytest.mark.gen_test
async def test_a_logged_in_form_over_the_form_limit_is_refused_before_its_body(connect, logged_in):
    connection = await connect()
    await connection.send(
        request_head(
            "POST", "/admin/clients", Content_Type=FORM, Cookie=cookies(logged_in), Content_Length=str(FORM_LIMIT + 1)
        )
    )
    status, _, body = await connection.response()
    assert status == 413 and f"larger than {FORM_LIMIT} bytes" in body.decode()


@pytest.mark.gen_test
async def test_a_chunked_form_over_the_form_limit_is_refused_as_it_streams(connect, logged_in):
    connection = await connect()
    await connection.send(
        request_head(
            "POST", "/admin/clients", Content_Type=FORM, Cookie=cookies(logged_in), Transfer_Encoding="chunked"
        )
    )
    await connection.send(chunk(b"name=" + b"x" * FORM_LIMIT))
    status, _, body = await connection.response()
    assert status == 413 and f"larger than {FORM_LIMIT} bytes" in body.decode()


@pytest.mark.gen_test
async def test_a_csv_upload_may_pass_the_form_limit_but_not_the_upload_limit(connect, logged_in):
    ids = [f"csv-user-{i:05d}" for i in range(400)]  # about 6 KB: over the form limit, under the upload limit
    csv_file = ("user_id\n" + "\n".join(ids) + "\n").encode()
    assert FORM_LIMIT < len(csv_file) < UPLOAD_LIMIT
    created = await logged_in.post(
        "/admin/notifications/new",
        {"title": "From a file", "text": "Hello", "channel": "inbox"},
        files={"recipients_csv": ("ids.csv", csv_file)},
    )
    assert created.status == 302 and created.headers["Location"].startswith("/admin/notifications/")
    assert "new" not in created.headers["Location"]
    page = await logged_in.get(created.headers["Location"])
    assert "400 recipients" in text(page)

    connection = await connect()
    await connection.send(
        request_head(
            "POST",
            "/admin/notifications/new",
            Cookie=cookies(logged_in),
            Content_Type="multipart/form-data; boundary=x",
            Content_Length=str(UPLOAD_LIMIT + 1),
        )
    )
    status, _, body = await connection.response()
    assert status == 413 and f"larger than {UPLOAD_LIMIT} bytes" in body.decode()


@pytest.mark.gen_test
async def test_a_body_to_a_page_without_forms_is_refused_before_it_is_read(connect):
    connection = await connect()
    await connection.send(request_head("POST", "/unsubscribe/anything", Content_Type=FORM, Content_Length=str(HUGE)))
    status, _, _ = await connection.response()
    assert status == 400  # tornado's own ceiling (the form limit) for handlers that take no body


# --- the API: chunked bodies get a 413 JSON; requests before authentication are small or refused unread ---


def json_error(body: bytes) -> dict:
    return json.loads(body)


@pytest.mark.gen_test
async def test_an_oversized_chunked_api_body_is_a_413_json(connect, admin):
    notification = json.dumps({"title": "Chunked", "text": "Hello", "channel": "inbox", "recipients": ["a"]}).encode()
    small = await connect()
    await small.send(
        request_head(
            "POST",
            "/api/v1/notifications",
            Authorization=admin.header,
            Content_Type="application/json",
            Transfer_Encoding="chunked",
        )
    )
    await small.send(chunk(notification[:10]) + chunk(notification[10:]) + b"0\r\n\r\n")
    status, _, body = await small.response()
    assert status == 201, body

    big = await connect()
    await big.send(
        request_head(
            "POST",
            "/api/v1/notifications",
            Authorization=admin.header,
            Content_Type="application/json",
            Transfer_Encoding="chunked",
        )
    )
    for _ in range(BODY_LIMIT // 1000 + 1):
        await big.send(chunk(b" " * 1000))
    status, headers, body = await big.response()
    assert status == 413 and headers["content-type"].startswith("application/json")
    assert json_error(body)["errors"] == {"body": [f"must be at most {BODY_LIMIT} bytes"]}
    assert await big.closed_by_server()


@pytest.mark.gen_test
async def test_a_chunk_declared_larger_than_any_limit_is_a_413_json(connect, admin):
    connection = await connect()
    await connection.send(
        request_head(
            "POST",
            "/api/v1/notifications",
            Authorization=admin.header,
            Content_Type="application/json",
            Transfer_Encoding="chunked",
        )
    )
    await connection.send(b"40000000\r\n" + b" " * (BODY_LIMIT + 1))  # a 1 GiB chunk begins
    status, _, body = await connection.response()
    assert status == 413 and json_error(body)["errors"] == {"body": [f"must be at most {BODY_LIMIT} bytes"]}


@pytest.mark.gen_test
async def test_unauthenticated_api_requests_are_refused_before_their_body(connect):
    for framing in ({"Content_Length": str(BODY_LIMIT)}, {"Transfer_Encoding": "chunked"}):
        connection = await connect()
        await connection.send(request_head("POST", "/api/v1/notifications", Content_Type="application/json", **framing))
        status, headers, _ = await connection.response()
        assert status == 401 and "www-authenticate" in headers


@pytest.mark.gen_test
async def test_the_public_token_endpoint_takes_only_a_small_body(connect):
    connection = await connect()
    await connection.send(
        request_head("POST", "/api/v1/auth/token", Content_Type="application/json", Content_Length=str(FORM_LIMIT + 1))
    )
    status, _, body = await connection.response()
    assert status == 413 and json_error(body)["errors"] == {"body": [f"must be at most {FORM_LIMIT} bytes"]}


# --- timeouts ---


@pytest.mark.gen_test
async def test_an_idle_keep_alive_connection_is_closed(connect):
    connection = await connect()
    await connection.send(request_head("GET", "/healthz"))
    status, headers, _ = await connection.response()
    assert status == 200 and headers.get("connection", "").lower() != "close"
    assert await connection.closed_by_server()


@pytest.mark.gen_test
async def test_a_connection_that_never_finishes_its_headers_is_closed(connect):
    connection = await connect()
    await connection.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert await connection.closed_by_server()


@pytest.mark.gen_test
async def test_a_body_that_stalls_is_dropped(connect):
    connection = await connect()
    await connection.send(
        request_head("POST", "/api/v1/auth/token", Content_Type="application/json", Content_Length="100")
        + b'{"username"'
    )
    assert await connection.closed_by_server()
