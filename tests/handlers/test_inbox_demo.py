"""The inbox bell demo in headless Chromium, against a real `notifier serve` with its consumers: the badge
changes when a notification arrives, without a reload; the dropdown lists it; reading it clears the badge.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import expect, sync_playwright

from ..conftest import USER_SECRET
from ..served import Served, fetch
from ..support import user_token
from .admin.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

ADMIN = "Basic " + base64.b64encode(b"admin:bell-password-123").decode()


@pytest.fixture(scope="module")
def service(tmp_path_factory, amqp_url):
    served = Served(
        tmp_path_factory.mktemp("bell"),
        amqp_url,
        INBOX_DEMO="true",
        USER_JWT_SECRET=USER_SECRET,
        CONSUMERS_START="1",
        CONSUMERS_MIN="1",
        CONSUMERS_MAX="1",
    )
    try:
        served.start()
        assert served.cli("createsuperuser", "--username", "admin", stdin="bell-password-123\n").returncode == 0
        yield served
    finally:
        served.cleanup()


def notify(served: Served, user_id: str, title: str) -> None:
    body = {"title": title, "text": "Open it from the bell.", "channel": "inbox", "recipients": [user_id]}
    status, _ = served.call("POST", "/api/v1/notifications", body, ADMIN)
    assert status == 201


@pytest.mark.browser
def test_the_bell_counts_a_new_notification_without_a_reload(service):
    served = service
    ARTIFACTS.mkdir(exist_ok=True)
    notify(served, "bell-user", "Welcome aboard")  # one there before the page opens
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(f"{served.url}/inbox/demo")
        page.evaluate("window.loadedOnce = true")  # gone if the page reloads
        page.fill("#token", user_token(USER_SECRET, "bell-user", ttl=600))
        page.click("#connect")
        expect(page.locator("#status")).to_have_text("live", timeout=30000)
        expect(page.locator("#badge")).to_have_text("1", timeout=30000)
        page.screenshot(path=str(ARTIFACTS / "inbox-bell-1.png"))

        notify(served, "bell-user", "Your report is ready")
        expect(page.locator("#badge")).to_have_text("2", timeout=30000)
        assert page.evaluate("window.loadedOnce") is True
        assert page.locator("#badge").is_visible()
        page.screenshot(path=str(ARTIFACTS / "inbox-bell-2.png"))

        page.click("#bell")
        expect(page.locator("#list li.unread .title")).to_have_text(["Your report is ready", "Welcome aboard"])
        titles = page.locator("#list li .title").all_inner_texts()
        assert titles == ["Your report is ready", "Welcome aboard"]
        page.screenshot(path=str(ARTIFACTS / "inbox-bell-open.png"))
        page.click("#list li >> text=Your report is ready")
        expect(page.locator("#badge")).to_have_text("1", timeout=30000)
        page.click("#read-all")
        expect(page.locator("#badge")).to_be_hidden(timeout=30000)
        assert page.locator("#list li.unread").count() == 0
        assert page.evaluate("window.loadedOnce") is True
        page.screenshot(path=str(ARTIFACTS / "inbox-bell-read.png"))
        browser.close()
    assert problems == []
    token = user_token(USER_SECRET, "bell-user")
    status, _, raw = fetch(f"{served.url}/api/v1/me/notifications/counts", headers={"Authorization": token})
    assert status == 200 and raw == b'{"total":2,"unread":0,"unseen":0}'


@pytest.mark.gen_test
async def test_the_demo_page_is_off_unless_enabled(api):
    assert (await api.get("/inbox/demo")).status == 404
    assert (await api.get("/inbox/static/bell.js")).status == 404
