"""Webhook destinations cannot be pointed inward: every resolved address is checked, the connection is
pinned to it, redirects are not followed, and the caller learns only "destination not allowed"."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from bson import ObjectId
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.netutil import DefaultLoopResolver, OverrideResolver, Resolver

from notifier.channels.base import PermanentFailure, TemporaryFailure
from notifier.channels.http import post_json
from notifier.outbound import Allowlist, DestinationRefused, OutboundHTTP, check_url, why_refused
from notifier.settings import Settings, SettingsError

from ..http_peer import Peer
from ..queue.conftest import pipeline_settings, settled, smtp, workers  # noqa: F401  (shared pipeline fixtures)
from ..support import TEST_ADMIN

# Every way of writing loopback that getaddrinfo understands, and loopback wrapped in IPv6.
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",
    "0177.0.0.1",
    "127.1",
    "0x7f.1",
    "0x7f000001",
    "017700000001",
    "localhost",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
]


@pytest.fixture
def settings_overrides(pipeline_settings):
    return pipeline_settings  # OUTBOUND_ALLOW left at its default: nothing internal is allowed


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "100::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",
        "2002:a00:1::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1",
        "::127.0.0.1",
    ],
)
def test_inward_addresses_are_refused(address):
    assert why_refused(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_pass(address):
    assert why_refused(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:secret@example.com/",
        "http://@example.com/",
        "http:///path",
        "http://example.com:0/",
        "http://example.com:99999/",
        "http://example.com:x/",
        "//example.com/",
    ],
)
def test_unacceptable_url_forms_are_refused(url):
    with pytest.raises(DestinationRefused):
        check_url(url)


@pytest.mark.gen_test
@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_every_spelling_of_loopback_is_refused_before_connecting(peer, host):
    http = OutboundHTTP(Allowlist())
    try:
        with pytest.raises(PermanentFailure) as refused:
            await post_json(http, f"http://{host}:{peer.port}/hook?token=receiver-secret", {"a": 1}, {}, 5)
    finally:
        http.close()
    assert refused.value.reason == "destination_refused"
    assert str(refused.value) == "destination not allowed"  # nothing about what is there
    assert peer.requests == []
    # The detail, for the consumer's log line: what was refused and why, but not the receiver's path.
    assert "loopback" in refused.value.detail and str(peer.port) in refused.value.detail
    assert "receiver-secret" not in refused.value.detail


@pytest.mark.gen_test
async def test_a_name_that_does_not_exist_is_refused_like_an_internal_one():
    http = OutboundHTTP(Allowlist())
    failures = []
    try:
        for host in ("localhost", "localhost.", "no-such-host.invalid"):
            with pytest.raises(PermanentFailure) as refused:
                await post_json(http, f"http://{host}/hook", {}, {}, 5)
            failures.append((refused.value.reason, str(refused.value)))
    finally:
        http.close()
    assert failures == [("destination_refused", "destination not allowed")] * 3
    assert "does not resolve" in refused.value.detail


@pytest.fixture
def silent_listener():
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.gen_test
async def test_refused_timed_out_and_unresolvable_look_the_same(silent_listener):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]

    class FailingDns(Resolver):  # a resolver failing for now (the name may exist)
        async def resolve(self, host, port, family=socket.AF_UNSPEC):
            if host == "flaky.test":
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            return await DefaultLoopResolver().resolve(host, port, family)

    http = OutboundHTTP(Allowlist.parse(["127.0.0.1"]), resolver=FailingDns())
    failures = []
    try:
        for url in (
            f"http://127.0.0.1:{closed}/hook",
            f"http://127.0.0.1:{silent_listener}/hook",
            "http://flaky.test/hook",
        ):
            with pytest.raises(TemporaryFailure) as failed:
                await post_json(http, url, {}, {}, 0.5)
            failures.append((str(failed.value), failed.value.detail))
    finally:
        http.close()
    assert [public for public, _ in failures] == ["destination unreachable"] * 3
    refused, timed_out, unresolved = [detail for _, detail in failures]
    assert str(closed) in refused and "refused" in refused.lower()
    assert str(silent_listener) in timed_out and "timeout" in timed_out.lower()
    assert "temporary failure" in unresolved.lower()


@pytest.mark.gen_test
async def test_allow_list_admits_what_the_operator_names_and_nothing_else(peer):
    for entries, url, admitted in [
        (["127.0.0.1"], f"http://127.0.0.1:{peer.port}/a", True),
        (["127.0.0.0/8"], f"http://2130706433:{peer.port}/b", True),
        (["localhost"], f"http://localhost:{peer.port}/c", True),
        (["localhost"], f"http://127.0.0.1:{peer.port}/d", False),
        (["10.0.0.0/8"], f"http://127.0.0.1:{peer.port}/e", False),
    ]:
        http = OutboundHTTP(Allowlist.parse(Settings.from_env({"OUTBOUND_ALLOW": ",".join(entries)}).outbound_allow))
        try:
            if admitted:
                await post_json(http, url, {}, {}, 5)
            else:
                with pytest.raises(PermanentFailure, match="destination not allowed"):
                    await post_json(http, url, {}, {}, 5)
        finally:
            http.close()
    assert [r.path for r in peer.requests] == ["/a", "/b", "/c"]


def test_allow_list_setting_is_checked():
    with pytest.raises(SettingsError, match="OUTBOUND_ALLOW"):
        Settings.from_env({"OUTBOUND_ALLOW": "10.0.0.0/8, not a host!"})


@pytest.mark.gen_test
async def test_a_redirect_from_an_allowed_host_inward_is_not_followed(peer):
    inside = Peer().start()
    peer.answers = [(302, {}, {"Location": f"http://127.0.0.1:{inside.port}/admin"})]
    http = OutboundHTTP(Allowlist.parse(["localhost"]))  # the allowed hook; 127.0.0.1 by address is not
    try:
        with pytest.raises(HTTPClientError) as answered:
            await http.fetch(
                HTTPRequest(f"http://localhost:{peer.port}/hook", method="POST", body="{}", follow_redirects=True)
            )
        with pytest.raises(PermanentFailure) as failed:
            await post_json(http, f"http://localhost:{peer.port}/hook", {}, {}, 5)
    finally:
        http.close()
        inside.stop()
    assert answered.value.code == 302 and failed.value.reason == "rejected"
    assert len(peer.requests) == 2 and inside.requests == []


class TwoRecords(Resolver):
    """A DNS answer with a public and an internal address (rebinding with two records)."""

    async def resolve(self, host, port, family=socket.AF_UNSPEC):
        return [(socket.AF_INET, ("8.8.8.8", port)), (socket.AF_INET, ("127.0.0.1", port))]


@pytest.mark.gen_test
async def test_one_inward_address_among_public_ones_refuses_the_name(peer):
    http = OutboundHTTP(Allowlist(), resolver=TwoRecords())
    try:
        with pytest.raises(PermanentFailure, match="destination not allowed"):
            await post_json(http, f"http://rebind.test:{peer.port}/hook", {}, {}, 5)
    finally:
        http.close()
    assert peer.requests == []


@pytest.mark.gen_test
async def test_the_connection_goes_to_the_checked_address_and_keeps_the_name(peer):
    # hooks.internal resolves (here by tornado's OverrideResolver) to the operator's allowed 127.0.0.1.
    dns = OverrideResolver(resolver=DefaultLoopResolver(), mapping={"hooks.internal": "127.0.0.1"})
    http = OutboundHTTP(Allowlist.parse(["127.0.0.1"]), resolver=dns)
    try:
        await post_json(http, f"http://hooks.internal:{peer.port}/hook", {}, {}, 5)
    finally:
        http.close()
    [request] = peer.requests
    assert request.headers["Host"] == f"hooks.internal:{peer.port}"


@pytest.mark.gen_test(timeout=90)
async def test_webhook_aimed_inward_fails_at_once_and_the_client_sees_a_generic_reason(api, admin, ctx, peer, workers):
    users = {
        f"inward-{i}": f"http://{host}:{peer.port}/hook"
        for i, host in enumerate(["127.0.0.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"])
    }
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": uid, "webhook_url": url} for uid, url in users.items()])
    created = await api.post(
        "/api/v1/notifications",
        {"title": "t", "text": "x", "channel": "webhook", "recipients": list(users)},
        auth=admin.header,
    )
    assert created.status == 201, created.body
    assert await settled(ctx, ObjectId(created.body["id"]), len(users)) == {"failed": len(users)}
    listed = await api.get(f"/api/v1/notifications/{created.body['id']}/deliveries", auth=admin.header)
    for delivery in listed.body["items"]:
        assert delivery["reason"] == "destination_refused" and delivery["attempts"] == 1
        assert delivery["last_error"] == "destination not allowed"
    assert peer.requests == []


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "url, message",
    [
        ("https://user:secret@hooks.example.com/x", "user information"),
        ("ftp://hooks.example.com/x", "URL"),
        ("https://hooks.example.com/" + "x" * 2000, "2000"),
    ],
)
async def test_webhook_url_is_checked_at_the_api(api, admin, url, message):
    response = await api.put("/api/v1/users/hooked", {"webhook_url": url}, auth=admin.header)
    assert response.status == 400
    assert message in " ".join(response.body["errors"]["webhook_url"])
