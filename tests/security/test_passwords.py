"""The one password guard, over HTTP: every form throttled per account and per address without a race,
one scrypt per attempt whether or not the account exists, scrypt off the event loop in a bounded pool."""

from __future__ import annotations

import asyncio
import hashlib
import threading

import pytest

from ..conftest import ADMIN_PASSWORD
from ..handlers.admin.conftest import Browser
from ..support import basic


@pytest.fixture
def settings_overrides(request):
    return getattr(request, "param", {})


@pytest.fixture
def scrypt_calls(monkeypatch):
    """Every scrypt run in this process, with the thread it ran on."""
    calls: list[threading.Thread] = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


async def _token(api, username, password):
    return await api.post("/api/v1/auth/token", {"username": username, "password": password})


async def _login_page(http_client, base_url, username, password):
    browser = Browser(base_url, http_client)
    await browser.get("/admin/login")
    return await browser.post("/admin/login", {"username": username, "password": password})


FORMS = {
    "admin Basic, wrong password": lambda api, **_: api.get("/api/v1/clients", auth=basic("root", "wrong-1")),
    "admin Basic, unknown admin": lambda api, **_: api.get("/api/v1/clients", auth=basic("ghost", "wrong-1")),
    "client Basic, wrong password": lambda api, **_: api.get("/api/v1/notifications", auth=basic("shop", "wrong-1")),
    "client app form, wrong password": lambda api, **_: api.get("/api/v1/notifications", auth="shop wrong-1"),
    "client app form, unknown client": lambda api, **_: api.get("/api/v1/notifications", auth="ghost wrong-1"),
    "token, wrong password": lambda api, **_: _token(api, "root", "wrong-1"),
    "token, unknown admin": lambda api, **_: _token(api, "ghost", "wrong-1"),
    "login page, wrong password": lambda api, http_client, base_url: _login_page(http_client, base_url, "root", "x"),
    "login page, unknown admin": lambda api, http_client, base_url: _login_page(http_client, base_url, "ghost", "x"),
}


@pytest.mark.gen_test
@pytest.mark.parametrize("form", FORMS)
async def test_every_failed_attempt_runs_scrypt_exactly_once(
    api, admin, client_app, http_client, base_url, scrypt_calls, form
):
    """Two runs for a known login and one for an unknown one told which logins exist."""
    response = await FORMS[form](api, http_client=http_client, base_url=base_url)
    assert response.status == 401
    assert len(scrypt_calls) == 1


@pytest.mark.gen_test
async def test_scrypt_runs_off_the_event_loop(api, admin, scrypt_calls):
    assert (await api.get("/api/v1/clients", auth=basic("root", "wrong-1"))).status == 401
    assert scrypt_calls and all(thread is not threading.main_thread() for thread in scrypt_calls)


@pytest.mark.gen_test
async def test_concurrent_wrong_basic_passwords_are_throttled_past_the_limit(api, admin):
    """Each attempt is counted before its password is checked, so 20 at once cannot all be tried."""
    responses = await asyncio.gather(*(api.get("/api/v1/clients", auth=basic("root", f"guess-{i}")) for i in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [401] * 5 + [429] * 15
    refused = next(r for r in responses if r.status == 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many failed logins for this account" in refused.body["message"]


@pytest.mark.gen_test
async def test_concurrent_wrong_token_requests_are_throttled_past_the_limit(api, admin):
    responses = await asyncio.gather(*(_token(api, "root", f"guess-{i}") for i in range(20)))
    assert sorted(r.status for r in responses) == [401] * 5 + [429] * 15


@pytest.mark.gen_test
async def test_admin_basic_failures_count_toward_the_login_lockout(api, admin, http_client, base_url):
    for i in range(5):
        assert (await api.get("/api/v1/clients", auth=basic("root", f"guess-{i}"))).status == 401
    assert (await _token(api, "root", ADMIN_PASSWORD)).status == 429
    assert (await _login_page(http_client, base_url, "root", ADMIN_PASSWORD)).status == 429


@pytest.mark.gen_test
async def test_one_address_guessing_many_logins_is_throttled(api, admin):
    for i in range(20):
        assert (await api.get("/api/v1/notifications", auth=f"login-{i} guess")).status == 401
    refused = await api.get("/api/v1/notifications", auth="yet-another guess")
    assert refused.status == 429 and "from your address" in refused.body["message"]
    assert (await api.get("/api/v1/clients", auth=admin.header)).status == 429  # the address, whatever the account


@pytest.mark.gen_test
async def test_unknown_logins_are_throttled_like_known_ones(api, admin):
    """Otherwise whether the sixth attempt gets 429 would tell which logins exist."""
    for login in ("root", "ghost"):
        statuses = [(await _token(api, login, f"guess-{i}")).status for i in range(6)]
        assert statuses == [401] * 5 + [429], login


@pytest.mark.gen_test
async def test_a_cached_right_password_does_not_outlast_a_lockout(api, client_app, scrypt_calls):
    assert (await api.get("/api/v1/notifications", auth=client_app.header)).status == 200
    assert (await api.get("/api/v1/notifications", auth=client_app.header)).status == 200
    assert len(scrypt_calls) == 1  # the second request was a cache hit
    for i in range(5):
        assert (await api.get("/api/v1/notifications", auth=f"shop guess-{i}")).status == 401
    assert (await api.get("/api/v1/notifications", auth="shop guess-5")).status == 429
    assert (await api.get("/api/v1/notifications", auth=client_app.header)).status == 429


@pytest.mark.gen_test
async def test_a_burst_of_right_passwords_is_one_attempt(api, client_app, scrypt_calls):
    """An app whose connections all start at once (cold cache) is neither throttled nor made to pay 20 scrypts."""
    responses = await asyncio.gather(*(api.get("/api/v1/notifications", auth=client_app.header) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert len(scrypt_calls) == 1


@pytest.mark.gen_test
async def test_a_right_password_resets_the_account_count(api, admin):
    for i in range(4):
        await _token(api, "root", f"guess-{i}")
    assert (await _token(api, "root", ADMIN_PASSWORD)).status == 200
    for i in range(5):
        assert (await _token(api, "root", f"again-{i}")).status == 401


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("settings_overrides", [{"password_workers": 1, "password_queue": 0}], indirect=True)
async def test_a_full_password_pool_answers_429_with_retry_after(api, admin, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = hashlib.scrypt

    def held(*args, **kwargs):
        entered.set()
        release.wait(10)  # bounded: on a server running scrypt on its event loop this would stall it
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", held)
    first = asyncio.ensure_future(api.get("/api/v1/clients", auth=basic("root", "guess-1")))
    assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
    second = await api.get("/api/v1/clients", auth=basic("other", "guess-2"))
    release.set()
    assert second.status == 429 and int(second.headers["Retry-After"]) >= 1
    assert "Too many password checks" in second.body["message"]
    assert (await first).status == 401


def _from(address: str) -> dict:
    return {"X-Real-IP": address}


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings_overrides", [{"trust_proxy_headers": True, "login_account_total_limit": 8}], indirect=True
)
async def test_a_strangers_wrong_passwords_do_not_lock_the_application_out(api, client_app):
    """The lockout is per account and address: the app keeps working from its own address and from any
    address that never guessed wrong, while guessing from many addresses together reaches the account's
    ceiling for the guessers."""
    stranger, app_host, second_stranger = "203.0.113.7", "198.51.100.1", "203.0.113.8"
    statuses = [
        (await api.get("/api/v1/notifications", auth=f"shop guess-{i}", headers=_from(stranger))).status
        for i in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    assert (await api.get("/api/v1/notifications", auth=client_app.header, headers=_from(app_host))).status == 200
    statuses = [
        (await api.get("/api/v1/notifications", auth=f"shop more-{i}", headers=_from(second_stranger))).status
        for i in range(3)
    ]
    assert statuses == [401, 401, 429]  # 6 + 2 attempts reach the ceiling of 8 for the account
    refused = await api.get("/api/v1/notifications", auth="shop once-more", headers=_from(second_stranger))
    assert refused.status == 429 and "for this account" in refused.body["message"]
    for address in (app_host, "198.51.100.2"):  # cached, then checked afresh from a clean address
        assert (await api.get("/api/v1/notifications", auth=client_app.header, headers=_from(address))).status == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"trust_proxy_headers": True}], indirect=True)
async def test_an_ipv6_host_is_one_address_whatever_its_interface_id(api):
    statuses = [
        (
            await api.get("/api/v1/notifications", auth=f"login-{i} guess", headers=_from(f"2001:db8:1:2::{i + 1:x}"))
        ).status
        for i in range(21)
    ]
    assert statuses == [401] * 20 + [429]
