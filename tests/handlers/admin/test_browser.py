"""End to end in headless Chromium: log in, create a notification for three users, watch them all get `sent`.

Against a real `notifier serve` (with its consumers), a loopback SMTP server and the real RabbitMQ.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import sync_playwright

from ...served import REPO, Served
from ...smtp_server import SmtpServer
from ...support import wait_until

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def service(tmp_path_factory, amqp_url):
    """One served service for the module: only the first test sends mail, the second reads a page."""
    smtp = SmtpServer().start()
    served = Served(
        tmp_path_factory.mktemp("browser"),
        amqp_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        CONSUMERS_START="1",
        CONSUMERS_MIN="1",
        CONSUMERS_MAX="2",
        OUTBOX_SWEEP_INTERVAL="1",
        OUTBOX_GRACE="2",
    )
    try:
        served.start()
        yield served, smtp
    finally:
        served.cleanup()
        smtp.stop()


def api(served: Served, method: str, path: str, body=None):
    auth = "Basic " + base64.b64encode(b"admin:e2e-password-123").decode()
    return served.call(method, path, body, auth)


@pytest.mark.browser
def test_admin_creates_a_notification_and_sees_it_sent(service):
    served, smtp = service
    assert served.cli("createsuperuser", "--username", "admin", stdin="e2e-password-123\n").returncode == 0
    status, _ = api(
        served,
        "POST",
        "/api/v1/users/bulk",
        {
            "users": [
                {"user_id": f"e2e-{i}", "email": f"e2e-{i}@example.com", "display_name": f"Reader {i}"}
                for i in (1, 2, 3)
            ]
        },
    )
    assert status == 200
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{served.url}/admin/")
        assert "/admin/login" in page.url
        page.fill("#f-username", "admin")
        page.fill("#f-password", "e2e-password-123")
        page.click("button[type=submit]")
        page.wait_for_url(f"{served.url}/admin/")
        assert page.locator("h1").inner_text() == "Dashboard"
        page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)

        page.click("text=Notifications")
        page.click("text=New notification")
        page.fill("#f-title", "Hello {{ name }}")
        page.fill("#f-text", "Your report is ready.")
        page.select_option("#f-channel", "email")
        page.fill("#f-recipients", "e2e-1\ne2e-2\ne2e-3")
        page.click("button:has-text('Create and send')")
        page.wait_for_selector("text=Notification created for 3 recipients.")
        detail_url = page.url

        def all_sent() -> bool:
            sent = page.locator("[data-count=sent]")
            if sent.count() and sent.inner_text() == "3":
                return True
            page.goto(detail_url)
            return False

        wait_until(all_sent, 60, "the page counting 3 sent", every=0.5)
        assert page.locator("#deliveries .badge.sent").count() == 3
        page.screenshot(path=str(ARTIFACTS / "admin-notification.png"), full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.context.add_cookies(page.context.cookies())
        phone.goto(detail_url)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        phone.screenshot(path=str(ARTIFACTS / "admin-notification-phone.png"), full_page=True)
        browser.close()

    assert sorted(r.recipient for r in smtp.received) == [f"e2e-{i}@example.com" for i in (1, 2, 3)]
    assert {r.subject for r in smtp.received} == {"Hello Reader 1", "Hello Reader 2", "Hello Reader 3"}


@pytest.mark.browser
def test_redoc_renders_under_its_content_security_policy(service):
    served, _ = service
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        # Loading nothing from elsewhere is the point (ReDoc's "powered by" logo is on its CDN); anything
        # else the policy blocks, any script error and any failed request of the page is a problem.
        page.on(
            "console",
            lambda message: (
                problems.append(message.text)
                if message.type == "error"
                and "Content Security Policy" in message.text
                and "Loading the image 'https://" not in message.text
                else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on(
            "response",
            lambda response: (
                problems.append(f"{response.status} {response.url}")
                if response.status >= 400 and not response.url.endswith("/favicon.ico")
                else None
            ),
        )
        page.goto(f"{served.url}/api/schema/redoc/")
        page.wait_for_selector("h1:has-text('notifier')")
        page.wait_for_selector("text='/api/v1/notifications'")
        page.wait_for_load_state("networkidle")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "redoc.png"))
        browser.close()
    assert not problems, problems
