"""End to end through the real broker, consumer processes, SecantusDB and an SMTP server on loopback."""

from __future__ import annotations

import email
import secrets
import time
from datetime import timedelta

import pytest
from bson import ObjectId

from notifier.queue.connection import BrokerConnection
from notifier.queue.journal import Journal
from notifier.services.contacts import Contacts
from notifier.services.outcomes import OutcomeKind, decide
from notifier.services.sending import Sender

from ..support import TEST_ADMIN, eventually
from .conftest import add_users, counts, settled

NOTE = {
    "title": "Hello {{ name }}",
    "text": "Order {{ order }} shipped.",
    "channel": "email",
    "variables": {"order": "A-7"},
}


async def create(api, admin, recipients, **changes):
    response = await api.post("/api/v1/notifications", {**NOTE, **changes, "recipients": recipients}, auth=admin.header)
    assert response.status in (201, 202), response.body  # 202: past INLINE_RECIPIENTS, stored in the background
    return response.body


@pytest.mark.gen_test(timeout=90)
async def test_email_reaches_every_recipient_once_rendered_with_unsubscribe_headers(api, admin, ctx, smtp, workers):
    users = await add_users(ctx, 20, display_name="Pat")
    created = await create(api, admin, users)
    assert await settled(ctx, ObjectId(created["id"]), 20) == {"sent": 20}
    assert smtp.handler.count_by_recipient(created["id"]) == {f"{u}@example.com": 1 for u in users}
    mail = email.message_from_bytes(smtp.received[0].raw)
    assert smtp.received[0].subject == "Hello Pat"
    assert mail["List-Unsubscribe"].strip().startswith("<http://notifier.test/unsubscribe/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in mail.walk()
        if not part.is_multipart()
    }
    assert "Order A-7 shipped." in parts["text/plain"]
    assert "Order A-7 shipped." in parts["text/html"] and "Unsubscribe</a>" in parts["text/html"]
    detail = await api.get(f"/api/v1/notifications/{created['id']}", auth=admin.header)
    assert detail.body["counts"] == {"sent": 20}
    delivery = (await api.get(f"/api/v1/notifications/{created['id']}/deliveries?limit=1", auth=admin.header)).body
    item = delivery["items"][0]
    assert item["status"] == "sent" and item["attempts"] == 1 and item["is_sent_to_queue"] is True
    assert item["sent_at"]


@pytest.mark.gen_test(timeout=90)
async def test_skips_say_why(api, admin, ctx, smtp, workers):
    await add_users(ctx, 1, prefix="subscribed")
    await add_users(ctx, 1, prefix="opted-out", unsubscribed_channels=["email"])
    await add_users(ctx, 1, prefix="gone", unsubscribed_all=True)
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": "bad-address", "email": "not an email"}])
    created = await create(api, admin, ["subscribed0", "opted-out0", "gone0", "bad-address", "stranger"])
    result = await settled(ctx, ObjectId(created["id"]), 5)
    assert result == {"sent": 1, "skipped": 4}

    async def reasons():
        # The detail's counts follow the consumer's outcome write by one increment (services/counts.py).
        detail = await api.get(f"/api/v1/notifications/{created['id']}", auth=admin.header)
        return detail.body["reasons"] if sum(detail.body["counts"].values()) == 5 else None

    assert await eventually(reasons, message="the skips counted") == {
        "unsubscribed": 2,
        "invalid_contact": 1,
        "no_contact": 1,
    }
    assert [r.recipient for r in smtp.received] == ["subscribed0@example.com"]


@pytest.mark.gen_test(timeout=90)
async def test_temporary_smtp_failures_retry_then_succeed(api, admin, ctx, smtp, workers):
    smtp.behaviour.tempfail_next = 2
    users = await add_users(ctx, 1)
    created = await create(api, admin, users)
    assert await settled(ctx, ObjectId(created["id"]), 1) == {"sent": 1}
    delivery = await ctx.store.deliveries.find_one({"notification_id": ObjectId(created["id"])})
    assert delivery["attempts"] == 3
    assert smtp.handler.refused == 2
    assert smtp.handler.count_by_recipient() == {"u0@example.com": 1}


@pytest.mark.gen_test(timeout=90)
@pytest.mark.parametrize("settings_overrides", [{"smtp_timeout": 1}], indirect=True)
async def test_an_email_whose_answer_is_lost_is_not_sent_again(api, admin, ctx, smtp, workers):
    """The server took the message but answered after the client gave up: it may have arrived, so it is
    failed as interrupted (redrive sends it anyway), never retried into a second copy."""
    smtp.behaviour.answer_delay = 3
    users = await add_users(ctx, 2)
    created = await create(api, admin, users)
    assert await settled(ctx, ObjectId(created["id"]), 2) == {"failed": 2}
    for delivery in await ctx.store.deliveries.find({"notification_id": ObjectId(created["id"])}).to_list(None):
        assert (delivery["reason"], delivery["attempts"]) == ("interrupted", 1), delivery
        assert "answer was lost" in delivery["last_error"]
    smtp.behaviour.answer_delay = 0
    # Nothing is left to send it again: a later notification goes out, and these two stay at one copy each.
    later = await create(api, admin, users[:1])
    assert await settled(ctx, ObjectId(later["id"]), 1) == {"sent": 1}
    assert smtp.handler.count_by_recipient(created["id"]) == {"u0@example.com": 1, "u1@example.com": 1}


@pytest.mark.gen_test(timeout=90)
async def test_exhausted_attempts_fail_and_park(api, admin, ctx, smtp, workers):
    smtp.behaviour.always_tempfail = {"u0@example.com"}
    smtp.behaviour.reject = {"u1@example.com"}
    users = await add_users(ctx, 2)
    created = await create(api, admin, users)
    assert await settled(ctx, ObjectId(created["id"]), 2) == {"failed": 2}
    detail = await api.get(f"/api/v1/notifications/{created['id']}", auth=admin.header)
    assert detail.body["reasons"] == {"attempts_exhausted": 1, "rejected": 1}
    exhausted = await ctx.store.deliveries.find_one({"user_id": "u0"})
    assert exhausted["attempts"] == ctx.settings.max_attempts and "451" in exhausted["last_error"]
    assert smtp.received == []
    channel = await ctx.broker.channel()
    parked = await channel.queue_declare(ctx.topology.parked, passive=True)
    assert parked.message_count == 2


@pytest.mark.gen_test(timeout=120)
async def test_outbox_sweep_publishes_what_the_broker_never_confirmed(api, admin, ctx, smtp, workers):
    """The publish fails (broker unreachable): the API still accepts, the sweep sends it later."""
    real_broker = ctx.publisher.broker
    dead = BrokerConnection("amqp://guest:guest@127.0.0.1:1/", "dead")
    ctx.publisher.broker = dead
    users = await add_users(ctx, 3)
    created = await create(api, admin, users)
    await ctx.publisher.drain(5)
    pending = await ctx.store.deliveries.find({"notification_id": ObjectId(created["id"])}).to_list(None)
    assert {(d["status"], d["is_sent_to_queue"]) for d in pending} == {("pending", False)}
    ctx.publisher.broker = real_broker
    assert await settled(ctx, ObjectId(created["id"]), 3) == {"sent": 3}
    assert smtp.handler.count_by_recipient(created["id"]) == {f"{u}@example.com": 1 for u in users}


@pytest.mark.gen_test(timeout=120)
async def test_express_is_delivered_before_a_regular_backlog(api, admin, ctx, smtp, workers):
    regular_total = 800
    users = await add_users(ctx, regular_total)
    regular = await create(api, admin, users, title="regular")
    await eventually(lambda: _received_at_least(smtp, 50), message="regular traffic flowing")
    express = await create(api, admin, ["u7"], title="urgent", is_express=True)
    await settled(ctx, ObjectId(express["id"]), 1, timeout=30)
    position = next(i for i, r in enumerate(smtp.received) if r.notification_id == express["id"])
    regular_before = sum(1 for r in smtp.received[:position] if r.notification_id == regular["id"])
    assert regular_before < regular_total * 0.5, f"express waited behind {regular_before} regular messages"
    await settled(ctx, ObjectId(regular["id"]), regular_total, timeout=90)


async def _received_at_least(smtp, count):
    return len(smtp.received) >= count


@pytest.fixture
def settings_overrides(pipeline_settings, request):
    return {**pipeline_settings, **getattr(request, "param", {})}


@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("settings_overrides", [{"pacing_batch": 60, "pacing_interval": 0.4}], indirect=True)
async def test_pacing_spreads_a_large_notification(api, admin, ctx, smtp, workers):
    """600 recipients with 60 per 0.4 s: message i cannot be sent before batch i // 60 was released."""
    users = await add_users(ctx, 600, prefix="p")
    started = time.time()
    created = await create(api, admin, users)
    assert await settled(ctx, ObjectId(created["id"]), 600, timeout=90) == {"sent": 600}
    deliveries = await ctx.store.deliveries.find({"notification_id": ObjectId(created["id"])}).to_list(None)
    sent_times = sorted(d["sent_at"].timestamp() for d in deliveries)
    for index, sent_at in enumerate(sent_times):
        earliest = started + (index // 60) * 0.4
        assert sent_at >= earliest - 0.05, f"message {index} sent {earliest - sent_at:.3f}s before its batch"
    assert sent_times[-1] - started >= 9 * 0.4 - 0.05
    pace_queues = {ctx.topology.pace_queue(ms) for ms in ctx.topology.pace_declared}
    assert len(pace_queues) == 9


@pytest.mark.gen_test(timeout=60)
async def test_express_is_never_paced(api, admin, ctx, smtp, workers):
    ctx.publisher.settings = ctx.settings.replace(pacing_batch=10, pacing_interval=5.0)
    users = await add_users(ctx, 50)
    created = await create(api, admin, users, is_express=True)
    assert await settled(ctx, ObjectId(created["id"]), 50, timeout=20) == {"sent": 50}
    assert ctx.topology.pace_declared == {}


@pytest.mark.gen_test(timeout=90)
async def test_a_redelivered_message_is_not_sent_twice(api, admin, ctx, smtp, workers):
    """Publishing the same delivery again (as a sweep racing the first publish would) sends nothing more."""
    users = await add_users(ctx, 5)
    created = await create(api, admin, users)
    await settled(ctx, ObjectId(created["id"]), 5)
    deliveries = await ctx.store.deliveries.find({"notification_id": ObjectId(created["id"])}).to_list(None)
    await ctx.store.deliveries.update_many({}, {"$set": {"is_sent_to_queue": False}})
    await ctx.publisher.publish(deliveries)
    await eventually(lambda: _queue_empty(ctx), message="duplicates consumed")
    assert smtp.handler.count_by_recipient(created["id"]) == {f"{u}@example.com": 1 for u in users}
    assert await counts(ctx, ObjectId(created["id"])) == {"sent": 5}


async def _queue_empty(ctx):
    channel = await ctx.broker.channel()
    declared = await channel.queue_declare(ctx.topology.queues["regular"], passive=True)
    return declared.message_count == 0 and declared.consumer_count >= 1


@pytest.mark.gen_test(timeout=90)
async def test_expired_lease_is_reconciled(api, admin, ctx, smtp, workers):
    """A claim whose consumer vanished (no pool noticed) goes back to the queue when its lease expires."""
    users = await add_users(ctx, 1)
    created = await create(api, admin, users)
    await settled(ctx, ObjectId(created["id"]), 1)
    smtp.handler.received.clear()
    await ctx.store.deliveries.update_many(
        {},
        {
            "$set": {
                "status": "sending",
                "claim": "lost",
                "claimed_by": "elsewhere",
                "lease_until": ctx.clock.now() - timedelta(seconds=1),
            }
        },
    )
    assert await settled(ctx, ObjectId(created["id"]), 1) == {"sent": 1}
    assert len(smtp.received) == 1


@pytest.mark.gen_test(timeout=60)
async def test_queued_messages_the_broker_lost_are_published_again(ctx, admin):
    """RabbitMQ dead-letters delay tiers at most once; a message dropped there leaves a delivery queued with
    nothing in the broker. Once the work queues are empty, the lost-message finder publishes it again."""
    principal = await ctx.auth.authenticate(admin.header)
    await ctx.notifications.create(
        principal, {**NOTE, "is_express": False, "content_id": None, "recipients": ["a", "b", "c"]}
    )
    await ctx.publisher.drain(10)
    assert {d["status"] for d in await ctx.store.deliveries.find({}).to_list(None)} == {"queued"}
    channel = await ctx.broker.channel()
    await channel.queue_purge(ctx.topology.queues["regular"])  # the broker "loses" them
    assert await ctx.recovery.find_lost(after=3600) == 0  # not overdue yet
    # Due times are stored rounded up to the whole second: overdue by -1 s takes in "due by now".
    assert await ctx.recovery.find_lost(after=-1) == 3
    declared = await channel.queue_declare(ctx.topology.queues["regular"], passive=True)
    assert declared.message_count == 3
    assert await ctx.recovery.find_lost(after=-1) == 0  # the queue holds them again: nothing is lost


@pytest.mark.gen_test(timeout=90)
async def test_an_expired_lease_of_a_live_consumer_is_left_to_it(api, admin, ctx, smtp, workers):
    """However slow the database, a consumer of ours that is alive writes its own outcomes: taking its claim
    back on lease expiry would let a second consumer send the same message."""
    users = await add_users(ctx, 1)
    created = await create(api, admin, users)
    await settled(ctx, ObjectId(created["id"]), 1)
    alive = next(iter(ctx.pool.processes))
    await ctx.store.deliveries.update_many(
        {},
        {
            "$set": {
                "status": "sending",
                "claim": "slow",
                "claimed_by": alive,
                "lease_until": ctx.clock.now() - timedelta(seconds=1),
            }
        },
    )
    assert await ctx.recovery.reconcile_leases() == 0
    assert await counts(ctx, ObjectId(created["id"])) == {"sending": 1}


@pytest.mark.gen_test(timeout=60)
async def test_a_batch_past_its_sending_share_of_the_lease_sends_nothing_and_is_released(ctx, admin, tmp_path):
    """A claim that took too long to come back is not sent on: the delivery goes back to pending, unsent,
    without using up an attempt."""
    principal = await ctx.auth.authenticate(admin.header)
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": "late", "email": "late@example.com"}])
    notification, _ = await ctx.notifications.create(
        principal, {**NOTE, "is_express": False, "content_id": None, "recipients": ["late"]}
    )
    await ctx.publisher.drain(10)
    delivery = await ctx.store.deliveries.find_one({"notification_id": notification["_id"]})
    token = secrets.token_hex(8)
    assert await ctx.deliveries.claim([delivery["_id"]], "test-late", ctx.clock.now(), 60, token)

    class NeverCalled:
        name, contact_field, repeat_safe = "email", "email", False

        def valid_contact(self, value):
            return True

        async def send(self, message, commit):
            raise AssertionError("a send started after the claim's sending share of its lease")

    journal = Journal(tmp_path / "late.journal")
    sender = Sender(ctx.store, {"email": NeverCalled()}, Contacts(ctx.store, ctx.settings, None), ctx.links, journal)
    outcome = await sender.attempt(delivery, await sender.look_up([delivery]), token, send_before=time.monotonic() - 1)
    assert outcome.kind is OutcomeKind.ABANDONED
    now = ctx.clock.now()
    released = decide(outcome.kind, now, error=outcome.error)
    await ctx.deliveries.finish(token, [(delivery["_id"], released.update())])
    after = await ctx.store.deliveries.find_one({"_id": delivery["_id"]})
    assert (after["status"], after["is_sent_to_queue"], after["attempts"]) == ("pending", False, 0)
    journal.close(remove=True)
