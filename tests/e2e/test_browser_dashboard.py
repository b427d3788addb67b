"""The dashboard in a real browser (Debian's Chromium via Playwright) against a real daphne with the Redis layer.

Screenshots go to artifacts/browser/; the staff view is copied to docs/dashboard.png (docs/dashboard-and-api.md) when
that file is missing or UPDATE_README_SCREENSHOT=1.
"""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from execution.models import Order
from ground import bus
from risk import state as trading_state
from risk.models import TradingState
from tests.support import processes, series

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
expect.set_options(timeout=20_000)

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
README_SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT = 20_000


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    """Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still plain sync."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def server(daphne_server):
    """The shared daphne; its log is printed after the test (pytest shows it when the test fails)."""
    yield daphne_server
    print(daphne_server.output()[-20_000:])


def off_loop(fn, *args, **kwargs):
    """Run ``fn`` in a thread without Playwright's event loop (the bus's async_to_sync refuses to run beside it)."""

    def call():
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


@pytest.fixture
def page():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(TIMEOUT)
        outside: list[str] = []

        def offline(route):  # the page must work offline: anything not on this machine is refused and noted
            url = route.request.url
            if url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:")):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        context.route("**/*", offline)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Chromium reports what the Content-Security-Policy blocked on the console ("Refused to …").
        violations: list[str] = []
        page.on("console", lambda m: "Security Policy" in m.text and violations.append(f"{m.text} {m.location}"))
        page.js_errors = errors
        page.outside_requests = outside
        yield page
        assert not violations, violations
        # The test's ORM calls beside Playwright's event loop ran on a connection of that loop's context (asgiref's
        # Local): close it here, in that context, or it outlives the test and blocks dropping the test database.
        connections.close_all()
        context.close()
        browser.close()


def _user(name: str, *perms: str, staff: bool = False) -> User:
    user = User.objects.create_user(name, password=f"{name}-password", is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def _login(page, port: int, name: str) -> None:
    page.goto(f"http://127.0.0.1:{port}/")
    expect(page).to_have_url(f"http://127.0.0.1:{port}/accounts/login/?next=/")  # login required
    page.fill("#id_username", name)
    page.fill("#id_password", f"{name}-password")
    page.click("#login-submit")
    expect(page).to_have_url(f"http://127.0.0.1:{port}/")
    expect(page.locator("body")).to_have_attribute("data-connection", "live")


def _shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _signal(symbol: str, ts: int) -> dict:
    return {
        "type": "signal",
        "symbol": symbol,
        "side": "BUY",
        "confidence": 0.9,
        "reason": "browser test",
        "timestamp": ts,
        "price": 110.0,
        "signal_id": f"{symbol}:browser:{ts}",
    }


def test_staff_sees_live_tables_and_halts_trading(server, page, sma_cross):
    _user("operator", "halt_trading", staff=True)
    # Some history for the cards and charts: the crafted series gives candles, one BUY signal and its order, filled
    # at the next candle's open; a few more candles and a SELL signal (filled at the candle after it) close it
    # again (an exit marker on the price chart).
    off_loop(series.publish_all, series.events())
    assert Order.objects.filter(symbol="TEST_USDT", status="PENDING").count() == 1
    later = [110.5, 111.2, 112.0, 112.4, 113.1]
    start = series.BASE_TS + (series.CROSS_INDEX + 1) * series.STEP_MS
    later_events = series.events(prices=later, base_ts=start)
    off_loop(series.publish_all, later_events)
    assert Order.objects.filter(symbol="TEST_USDT", status="FILLED").count() == 1
    exit_ts = start + (len(later) - 1) * series.STEP_MS
    off_loop(
        bus.publish, {**_signal("TEST_USDT", exit_ts), "side": "SELL", "price": later[-1], "reason": "take profit"}
    )
    off_loop(bus.publish, series.next_event(later_events, open_=113.0, close=113.2))
    assert Order.objects.filter(symbol="TEST_USDT", side="SELL", status="FILLED").count() == 1
    port = server.port

    _login(page, port, "operator")
    expect(page.locator("#state")).to_have_text("ACTIVE")
    expect(page.locator("#mode")).to_have_text("PAPER")
    expect(page.locator("#equity")).not_to_have_text("–")
    expect(page.locator("#open-positions")).to_have_text("0")
    expect(page.locator("#health")).to_contain_text("database: ok")
    expect(page.locator("#health")).to_contain_text("redis: ok")
    expect(page.locator("#freshness")).to_contain_text("TEST_USDT")
    # the two P&L figures say which side of the fees they are on (the card's realized P&L is before them)
    expect(page.locator("#cash")).to_contain_text("realized (before fees)")
    expect(page.locator("#trades-totals")).to_contain_text("1 trade · P&L after fees")
    # and so do the tables' columns and the positions card (unrealized: before fees, closed trades: after them)
    expect(page.locator("#closed-trades thead")).to_contain_text("P&L after fees")
    expect(page.locator("#closed-trades thead")).to_contain_text("P&L % after fees")
    expect(page.locator("#positions thead")).to_contain_text("Unrealized P&L before fees")
    expect(page.locator("#unrealized")).to_contain_text("unrealized (before fees)")
    expect(page.locator("#signals tbody tr")).to_have_count(1)  # the stored one; the SELL was a bare event
    # every time a person reads in one shape, ISO 8601 UTC to the second (the admin's, the commands', the reports')
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    expect(page.locator("#closed-trades tbody tr").first.locator("td").nth(1)).to_have_text(iso)
    expect(page.locator("#signals tbody tr").first.locator("td").first).to_have_text(iso)
    expect(page.locator("#clock-market")).to_have_text(iso)
    expect(page.locator("#state-since")).to_have_text(re.compile(r"^since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"))
    # The BUY (▲) and the SELL (▼) on the price chart, read back through lightweight-charts' API in the page.
    expect(page.locator("#price-chart")).to_have_attribute("data-state", "ready")
    shapes = page.evaluate("window.cdbCharts.price.readBack().markers.map((m) => m.shape)")
    assert sorted(shapes) == ["arrowDown", "arrowUp"]
    assert int(page.locator("#equity-chart").get_attribute("data-points")) >= 2
    page.evaluate("window.__sameDocument = true")

    off_loop(
        bus.publish,
        {
            "type": "order_result",
            "order_id": "PAPER_BROWSER",
            "client_order_id": "cdbbrowsertest",
            "status": "FAILED",
            "filled_quantity": 0,
            "price": 101.5,
            "fees": 0,
            "reason": "simulated exchange failure",
            "timestamp": series.BASE_TS + 3_600_000,
            "symbol": "ETH_USDT",
            "side": "BUY",
        },
    )
    off_loop(
        bus.publish,
        {
            "type": "alert",
            "level": "CRITICAL",
            "code": "RISK_LIMIT",
            "message": "Browser test alert: drawdown near its limit",
            "timestamp": series.BASE_TS + 3_600_000,
        },
    )
    first_result = page.locator("#order-results tbody tr").first
    expect(first_result).to_contain_text("simulated exchange failure")
    expect(first_result).to_have_class(re.compile(r"\bstatus-FAILED\b"))
    first_alert = page.locator("#alerts tbody tr").first
    expect(first_alert).to_contain_text("Browser test alert")
    expect(first_alert).to_have_class(re.compile(r"\blevel-CRITICAL\b"))
    assert page.evaluate("window.__sameDocument") is True  # pushed, not reloaded
    shot = _shot(page, "dashboard-staff")
    if not README_SCREENSHOT.exists() or os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)

    # Halt: the button asks for confirmation and a reason.
    page.click("#halt-button")
    expect(page.locator("#state-dialog")).to_be_visible()
    page.click("#state-confirm")
    expect(page.locator("#state-dialog-error")).to_contain_text("needs a reason")
    assert TradingState.load().state == "ACTIVE"
    page.fill("#state-reason-input", "browser test halt")
    _shot(page, "halt-dialog")
    page.click("#state-confirm")
    expect(page.locator("#state-dialog")).to_be_hidden()
    expect(page.locator("#state")).to_have_text("HALTED")
    expect(page.locator("#state-reason")).to_contain_text("browser test halt")
    state = TradingState.load()
    assert (state.state, state.reason, state.changed_by) == ("HALTED", "browser test halt", "operator")
    assert not page.outside_requests, page.outside_requests
    expect(page.locator("#alerts tbody tr").first).to_contain_text("Trading HALTED")
    _shot(page, "dashboard-halted")

    # A following signal creates no order (tasks run eagerly in this process; the risk layer reads the state).
    orders_before = Order.objects.count()
    off_loop(bus.publish, _signal("TEST_USDT", series.BASE_TS + 40 * series.STEP_MS))
    assert Order.objects.count() == orders_before
    expect(page.locator("#signals tbody tr").first).to_contain_text("browser test")

    page.click("#release-button")
    page.fill("#state-reason-input", "browser test over")
    page.click("#state-confirm")
    expect(page.locator("#state")).to_have_text("ACTIVE")
    assert not page.js_errors, page.js_errors


def test_viewer_gets_no_halt_button_and_a_403(server, page):
    viewer = _user("viewer")
    _login(page, server.port, "viewer")
    expect(page.locator("#state")).to_have_text("ACTIVE")
    expect(page.locator("#halt-button")).to_have_count(0)
    expect(page.locator("#release-button")).to_have_count(0)
    # The server refuses anyway: from the page with the session and its CSRF token, and with an API token.
    status = page.evaluate(
        """async () => {
            const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
            const r = await fetch("/api/risk/halt/", {method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                body: JSON.stringify({reason: "not allowed"})});
            return r.status;
        }"""
    )
    assert status == 403
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=viewer).key}")
    assert client.post("/api/risk/halt/", {"reason": "not allowed"}, format="json").status_code == 403
    assert TradingState.load().state == "ACTIVE"
    _shot(page, "dashboard-viewer")
    assert not page.js_errors, page.js_errors

    # The API's Swagger UI renders from the installed package, offline like the dashboard.
    page.goto(f"http://127.0.0.1:{server.port}/api/docs/")
    expect(page.locator("#swagger-ui")).to_contain_text("Claire de Binare API")
    expect(page.locator("#swagger-ui")).to_contain_text("/api/risk/halt/")
    _shot(page, "api-docs")
    assert not page.outside_requests, page.outside_requests


def test_admin_kill_switch_asks_and_halts_under_the_content_security_policy(server, page):
    User.objects.create_superuser("chief", password="chief-password")
    page.goto(f"http://127.0.0.1:{server.port}/admin/login/?next=/admin/risk/tradingstate/")
    page.fill("#id_username", "chief")
    page.fill("#id_password", "chief-password")
    page.click("input[type=submit]")
    page.fill("#id_reason", "admin browser halt")
    asked: list[str] = []

    def answer(dialog) -> None:  # the confirmation comes from static/cdb/admin_confirm.js, not an inline onclick
        asked.append(dialog.message)
        dialog.dismiss() if len(asked) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.click("button.cdb-halt")
    assert asked == ["HALT trading? No further order executes until someone releases it."]
    assert TradingState.load().state == "ACTIVE"  # dismissed: nothing sent
    page.click("button.cdb-halt")
    expect(page.locator(".messagelist")).to_contain_text("HALTED")
    assert TradingState.load().state == "HALTED"
    assert page.locator("button.cdb-halt").evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(186, 33, 33)"
    _shot(page, "admin-kill-switch")
    assert not page.js_errors, page.js_errors


def test_page_reconnects_and_resynchronises_after_a_server_restart(service_env, tmp_path, page):
    _user("watcher")
    port = processes.free_port()
    server = processes.start_daphne(service_env, tmp_path, port=port)
    try:
        _login(page, port, "watcher")
        expect(page.locator("#disconnected-banner")).to_be_hidden()
        page.evaluate("window.__sameDocument = true")

        server.stop()
        expect(page.locator("body")).to_have_attribute("data-connection", "disconnected")
        expect(page.locator("#disconnected-banner")).to_be_visible()
        expect(page.locator("#connection")).to_contain_text("disconnected")
        _shot(page, "disconnected")

        # What happens while the page is cut off must show up after the reconnect.
        off_loop(trading_state.halt, "halted while the server was down", actor="ops")

        (tmp_path / "restarted").mkdir()
        server = processes.start_daphne(service_env, tmp_path / "restarted", port=port)
        expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=30_000)
        expect(page.locator("#disconnected-banner")).to_be_hidden()
        expect(page.locator("#state")).to_have_text("HALTED")
        expect(page.locator("#state-reason")).to_contain_text("halted while the server was down")
        expect(page.locator("#alerts tbody")).to_contain_text("halted while the server was down")
        assert page.evaluate("window.__sameDocument") is True  # the same page, resynchronised over the socket
        _shot(page, "reconnected")
    finally:
        server.stop()
        print(server.output()[-20_000:])
