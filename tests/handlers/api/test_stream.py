"""GET /api/v1/me/stream against the real services: a consumer delivers inbox items, the stream hears of them
through RabbitMQ, and a client that drops and resumes with Last-Event-ID gets each event exactly once, in
order, from the same server, from another one, and across a restart."""

from __future__ import annotations

import contextlib
import logging
import socket

import pytest
from tornado.httpserver import HTTPServer

from notifier.app import make_app
from notifier.context import create_context
from notifier.server import make_http_server
from notifier.services.inbox import InboxLog, Tally

from ...queue.conftest import consumer, pipeline_settings, smtp  # noqa: F401  (shared pipeline fixtures)
from ...sse import SseClient
from ...support import eventually

NOTE = {"title": "Hi {{ user_id }}", "text": "New for you", "channel": "inbox"}


@pytest.fixture
def settings_overrides(pipeline_settings):  # noqa: F811
    return {**pipeline_settings, "stream_heartbeat": 0.2}


@contextlib.asynccontextmanager
async def instance(settings):
    """Another `notifier serve` on the same database and broker (its own context, app and HTTP server)."""
    ctx = await create_context(settings, settings.mongo_url)
    assert await ctx.broker.wait_connected(10)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    server: HTTPServer = make_http_server(make_app(ctx), settings)
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", ctx
    finally:
        server.stop()
        await server.close_all_connections()
        await ctx.close()


async def stream(base_url: str, token: str, after: int | None = None, **headers) -> SseClient:
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    client = await SseClient.open(base_url, "/api/v1/me/stream", {"Authorization": token, **headers})
    assert client.status == 200, client.body
    return client


async def send(api, admin, recipients: list[str], n: int = 1) -> None:
    for _ in range(n):
        response = await api.post("/api/v1/notifications", {**NOTE, "recipients": recipients}, auth=admin.header)
        assert response.status == 201, response.body


async def head_seq(ctx, user_id: str) -> int:
    return (await ctx.inbox.events.head(user_id))["seq"]


@pytest.mark.gen_test(timeout=120)
async def test_a_client_away_while_100_items_arrive_resumes_with_exactly_those_in_order(
    api, admin, end_user, ctx, consumer, base_url
):
    first = await stream(base_url, end_user("ann"))
    opening = await first.next_event()
    assert opening.type == "counts" and opening.data["counts"] == {"total": 0, "unread": 0, "unseen": 0}
    start = opening.seq
    await send(api, admin, ["ann"])
    [live] = await first.events(1)
    assert (live.type, live.seq, live.data["item"]["title"]) == ("new", start + 1, "Hi ann")
    assert live.data["counts"] == {"total": 1, "unread": 1, "unseen": 1}
    first.close()  # away while 100 more arrive
    await send(api, admin, ["ann", "bob"], 100)
    await eventually(lambda: _reached(ctx, "ann", start + 101), timeout=60, message="100 arrivals")
    resumed = await stream(base_url, end_user("ann"), after=live.seq)
    events = await resumed.events(100)
    assert [e.seq for e in events] == list(range(start + 2, start + 102))
    assert {e.type for e in events} == {"new"} and len({e.data["item"]["id"] for e in events}) == 100
    assert events[-1].data["counts"] == {"total": 101, "unread": 101, "unseen": 101}
    await send(api, admin, ["ann"])  # nothing repeated in between: the next one is the next number
    [following] = await resumed.events(1)
    assert following.seq == start + 102
    resumed.close()


async def _reached(ctx, user_id: str, seq: int) -> bool:
    return await head_seq(ctx, user_id) >= seq


@pytest.mark.gen_test(timeout=120)
async def test_resuming_on_another_instance_and_after_a_restart_loses_and_repeats_nothing(
    api, admin, end_user, ctx, consumer, settings
):
    async with instance(settings) as (url_a, ctx_a):
        on_a = await stream(url_a, end_user("ann"))
        start = (await on_a.next_event()).seq
        await send(api, admin, ["ann"], 3)
        got = await on_a.events(3)
        on_a.close()
    await send(api, admin, ["ann"], 20)  # instance A is gone
    async with instance(settings) as (url_b, ctx_b):
        await eventually(lambda: _reached(ctx_b, "ann", start + 23), timeout=60, message="20 arrivals")
        on_b = await stream(url_b, end_user("ann"), after=got[-1].seq)
        events = await on_b.events(20)
        assert [e.seq for e in events] == list(range(start + 4, start + 24))
        # Live on B now, while a change made through another instance (the test's own) reaches it too.
        item = events[0].data["item"]["id"]
        assert (await api.post(f"/api/v1/me/notifications/{item}/read", auth=end_user("ann"))).status == 204
        [read] = await on_b.events(1)
        assert (read.type, read.seq, read.data["item_id"]) == ("read", start + 24, item)
        assert read.data["counts"]["unread"] == 22
        on_b.close()


@pytest.mark.gen_test(timeout=120)
async def test_a_stream_never_carries_another_users_events(api, admin, end_user, ctx, consumer, base_url):
    bobs = await stream(base_url, end_user("bob"))
    bob_start = (await bobs.next_event()).seq
    await send(api, admin, ["ann"], 10)
    await send(api, admin, ["bob"])
    [only] = await bobs.events(1)
    assert only.seq == bob_start + 1 and only.data["item"]["title"] == "Hi bob"
    ann_item = (await api.get("/api/v1/me/notifications", auth=end_user("ann"))).body["items"][0]["id"]
    assert (await api.post(f"/api/v1/me/notifications/{ann_item}/read", auth=end_user("bob"))).status == 404
    await send(api, admin, ["bob"])
    [next_one] = await bobs.events(1)
    assert next_one.seq == bob_start + 2 and next_one.type == "new"
    bobs.close()


@pytest.mark.gen_test(timeout=60)
async def test_states_counts_and_filters_through_the_api(api, admin, end_user, ctx, consumer, base_url):
    live = await stream(base_url, end_user("ann"))
    await live.next_event()
    await send(api, admin, ["ann"], 3)
    arrivals = await live.events(3)
    ids = [e.data["item"]["id"] for e in arrivals]
    await eventually(lambda: _all_sent(api, end_user("ann"), 3), timeout=30, message="3 items sent")
    me = end_user("ann")
    assert (await api.post(f"/api/v1/me/notifications/{ids[0]}/seen", auth=me)).status == 204
    assert (await api.post(f"/api/v1/me/notifications/{ids[1]}/archive", auth=me)).status == 204
    counts = await api.get("/api/v1/me/notifications/counts", auth=me)
    assert counts.body == {"total": 2, "unread": 2, "unseen": 1}
    archived = await api.get("/api/v1/me/notifications?archived=true", auth=me)
    assert [i["id"] for i in archived.body["items"]] == [ids[1]]
    unseen = await api.get("/api/v1/me/notifications?unseen=true&archived=false", auth=me)
    assert [i["id"] for i in unseen.body["items"]] == [ids[2]]
    read_all = await api.post("/api/v1/me/notifications/read-all", auth=me)
    assert read_all.status == 200 and read_all.body == {"changed": 2}
    assert (await api.post(f"/api/v1/me/notifications/{ids[1]}/unarchive", auth=me)).status == 204
    events = await live.events(4)
    assert [e.type for e in events] == ["seen", "archived", "read_all", "unarchived"]
    assert events[-1].data["counts"] == {"total": 3, "unread": 0, "unseen": 2}  # read all took the archived too
    assert (await api.get("/api/v1/me/notifications/counts", auth=me)).body == events[-1].data["counts"]
    live.close()


async def _all_sent(api, token, n) -> bool:
    items = (await api.get("/api/v1/me/notifications", auth=token)).body["items"]
    return len(items) == n and all(i["status"] == "sent" for i in items)


@pytest.mark.gen_test(timeout=60)
async def test_a_ticket_opens_a_stream_and_nothing_else(api, end_user, base_url):
    issued = await api.post("/api/v1/me/stream/ticket", auth=end_user("ann"))
    assert issued.status == 200 and issued.body["expires_in"] == 60
    ticket = issued.body["ticket"]
    by_ticket = await SseClient.open(base_url, f"/api/v1/me/stream?ticket={ticket}")
    assert by_ticket.status == 200 and by_ticket.headers["content-type"].startswith("text/event-stream")
    assert (await by_ticket.next_event()).type == "counts"
    by_ticket.close()
    assert (await api.get("/api/v1/me/notifications", auth=ticket)).status == 401
    assert (await api.get("/api/v1/me/notifications", auth=f"Bearer {ticket}")).status == 401
    a_token = await SseClient.open(base_url, f"/api/v1/me/stream?ticket={end_user('ann')}")
    assert a_token.status == 401 and "stream ticket" in a_token.json()["message"]
    nothing = await SseClient.open(base_url, "/api/v1/me/stream")
    assert nothing.status == 401


@pytest.mark.gen_test(timeout=60)
async def test_a_bad_last_event_id_is_a_400_naming_it(http_server, end_user, base_url):
    for bad in ("abc", "-1", "1" * 40, "\u00b2"):  # "²" passes str.isdigit
        answer = await SseClient.open(
            base_url, "/api/v1/me/stream", {"Authorization": end_user("ann"), "Last-Event-ID": bad}
        )
        assert answer.status == 400 and "Last-Event-ID" in answer.json()["errors"], bad
    query = await SseClient.open(base_url, "/api/v1/me/stream?last_event_id=x", {"Authorization": end_user("ann")})
    assert query.status == 400 and "last_event_id" in query.json()["errors"]


@pytest.mark.gen_test(timeout=60)
async def test_a_stream_beats_while_idle_and_ends_cleanly_when_its_token_expires(http_server, end_user, base_url):
    live = await stream(base_url, end_user("ann", ttl=3))
    assert (await live.next_event()).type == "counts"
    ended = await live.next_event(timeout=20)
    assert ended is not None and ended.type == "end" and "token" in ended.data["reason"]
    assert live.comments >= 2  # heartbeats every 0.2 s came before the end
    assert await live.next_event(timeout=5) is None  # and the server closed it
    live.close()


@pytest.mark.gen_test(timeout=60)
async def test_resuming_from_an_id_the_log_never_reached_starts_over_with_a_reset(http_server, end_user, base_url):
    resumed = await stream(base_url, end_user("ann"), after=99)
    reset = await resumed.next_event()
    assert (reset.type, reset.seq, reset.data["counts"]) == ("reset", 0, {"total": 0, "unread": 0, "unseen": 0})
    resumed.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_server_stopping_ends_its_streams_and_refuses_new_ones(http_server, ctx, end_user, base_url):
    live = await stream(base_url, end_user("ann"))
    await live.next_event()
    await ctx.streams.close_all()
    ended = await live.next_event()
    assert ended is not None and ended.type == "end" and "stopping" in ended.data["reason"]
    refused = await SseClient.open(base_url, "/api/v1/me/stream", {"Authorization": end_user("ann")})
    assert refused.status == 503 and "stopping" in refused.json()["message"]


@pytest.mark.gen_test(timeout=60)
async def test_past_its_limits_a_server_ends_the_oldest_of_a_user_and_refuses_beyond_all(
    http_server, ctx, end_user, base_url
):
    ctx.streams.limit_per_user = 2
    ctx.streams.limit = 3
    first, second = [await stream(base_url, end_user("ann")) for _ in range(2)]
    third = await stream(base_url, end_user("ann"))
    events = await first.events(2)
    assert [e.type for e in events] == ["counts", "end"] and "newer" in events[1].data["reason"]
    bobs = await stream(base_url, end_user("bob"))
    beyond = await SseClient.open(base_url, "/api/v1/me/stream", {"Authorization": end_user("eve")})
    assert beyond.status == 503 and "STREAM_LIMIT" in beyond.json()["message"]
    for client in (first, second, third, bobs):
        client.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_access_log_never_shows_a_ticket(http_server, api, end_user, base_url, caplog):
    caplog.set_level(logging.INFO, logger="tornado.access")
    ticket = (await api.post("/api/v1/me/stream/ticket", auth=end_user("ann"))).body["ticket"]
    opened = await SseClient.open(base_url, f"/api/v1/me/stream?ticket={ticket}")
    assert (await opened.next_event()).type == "counts"
    opened.close()
    await eventually(lambda: _logged(caplog, "/api/v1/me/stream?ticket=[hidden]"), timeout=10, message="logged")
    assert ticket not in caplog.text


async def _logged(caplog, text: str) -> bool:
    return text in caplog.text


@pytest.mark.gen_test(timeout=60)
async def test_an_admin_recounts_a_users_inbox_and_their_stream_hears_it(api, admin, end_user, ctx, consumer, base_url):
    live = await stream(base_url, end_user("ann"))
    await live.next_event()
    await send(api, admin, ["ann"], 2)
    await live.events(2)
    await ctx.store.inbox_heads.update_one({"_id": "ann"}, {"$inc": {"unread": 5}})  # as a lost bulk event leaves
    assert (await api.get("/api/v1/me/notifications/counts", auth=end_user("ann"))).body["unread"] == 7
    refused = await api.post("/api/v1/users/ann/inbox/recount", auth=end_user("ann"))
    assert refused.status == 403
    recounted = await api.post("/api/v1/users/ann/inbox/recount", auth=admin.header, headers={"X-Requested-With": "t"})
    assert recounted.status == 200 and recounted.body == {"total": 2, "unread": 2, "unseen": 2}
    [correction] = await live.events(1)
    assert correction.type == "counts" and correction.data["counts"] == recounted.body
    live.close()


@pytest.mark.gen_test(timeout=60)
async def test_an_event_whose_announce_was_lost_reaches_the_stream_within_a_few_heartbeats(
    http_server, ctx, end_user, base_url
):
    live = await stream(base_url, end_user("ann"))
    start = (await live.next_event()).seq
    unannounced = InboxLog(ctx.store, ctx.clock, 1)  # no publish: as a writer whose broker was away
    await unannounced.append("ann", "counts", Tally(), {})
    [missed] = await live.events(1, timeout=20)
    assert (missed.seq, missed.type) == (start + 1, "counts")
    assert live.comments >= 4  # it came with a check on a heartbeat, not with a live event
    live.close()
