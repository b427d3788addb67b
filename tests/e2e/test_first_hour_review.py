"""The first-hour review's findings (issue 22), through the real things on `make run`'s kind of database (SQLite,
embedded): `manage.py serve`, its websocket and HTTP API, `manage.py halt` / `release` / `risk_status` in a shell,
the admin and the dashboard in Chromium.

- the admin shows amounts in their currency's places with the exact value in the title, times in ISO 8601 UTC
  labelled with their clock; the kill switch's buttons follow the state; the risk parameters are named as SPEC §4;
- the websocket's market_data and signals pushes and /api/chart/ carry exact decimal strings;
- a halt or release from a shell reaches an open dashboard at once (not at its next refresh);
- a second `manage.py serve` on the same database stops with a one-line error, and a crashed one leaves no lock;
- one price reads the same in risk_status and on the dashboard;
- an API error in the dashboard's dialog and on the backtest pages reads as a sentence, never as JSON.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.e2e.test_first_hour import PASSWORD, USER, _env, _get, _manage, _one, _serve, _stop, _token
from tests.support import processes
from tests.support.processes import ROOT, free_port, wait_until
from tests.support.ws import DashboardClient, http_login

EXACT = re.compile(r"(0|[1-9]\d*)(\.\d*[1-9])?")  # an exact decimal string: no exponent, no trailing zeros
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
SHELL_PUSH_DEADLINE = 3.0  # seconds from the shell command's exit to the push: generous (the watch reads every 0.5 s)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`make run`'s server on its own SQLite file, faster than `make run` (a 1m candle every 0.1 s) until it has
    traded; shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("run")
    db = tmp / "db.sqlite3"
    env = _env(db)
    server, port = _serve(env, tmp, "serve", "--tick-seconds", "0.1")
    try:
        wait_until(lambda: _one(db, "SELECT COUNT(*) FROM execution_order") >= 2, timeout=180, message="orders")
        yield {"db": db, "env": env, "port": port, "server": server, "tmp": tmp}
    finally:
        _stop(server)


def _wait_push(client: DashboardClient, kind: str, predicate, deadline: float) -> dict:
    """The first push of ``kind`` that satisfies ``predicate``, waited for until ``deadline`` (monotonic)."""
    while time.monotonic() < deadline:
        for message in list(client.messages):
            if message["kind"] == kind and predicate(message["data"]):
                return message["data"]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} push in time: {[m['kind'] for m in client.messages][-20:]}")


def test_a_halt_or_release_in_a_shell_reaches_an_open_dashboard_at_once(run):
    client = DashboardClient(run["port"], cookie=http_login(run["port"], USER, PASSWORD))
    try:
        _manage(run["env"], "halt", "--reason", "from the shell", "--actor", "ops")
        pushed = _wait_push(
            client, "trading_state", lambda d: d["state"] == "HALTED", time.monotonic() + SHELL_PUSH_DEADLINE
        )
        assert pushed["reason"] == "from the shell" and pushed["changed_by"] == "ops"
        # a second halt adds its reason to the halt's: pushed too
        _manage(run["env"], "halt", "--reason", "still checking", "--actor", "ops")
        pushed = _wait_push(
            client, "trading_state", lambda d: "still checking" in d["reason"], time.monotonic() + SHELL_PUSH_DEADLINE
        )
        assert pushed["state"] == "HALTED" and pushed["reason"].startswith("from the shell; then ops: still checking")
        _manage(run["env"], "release", "--reason", "checked", "--actor", "ops")
        pushed = _wait_push(
            client, "trading_state", lambda d: d["state"] == "ACTIVE", time.monotonic() + SHELL_PUSH_DEADLINE
        )
        assert pushed["reason"] == "checked"
    finally:
        client.close()


def test_pushes_and_the_chart_carry_exact_decimal_strings(run):
    client = DashboardClient(run["port"], cookie=http_login(run["port"], USER, PASSWORD))
    try:
        deadline = time.monotonic() + 120
        candle = _wait_push(client, "market_data", lambda d: True, deadline)
        signal_ = _wait_push(client, "signals", lambda d: True, deadline)
    finally:
        client.close()
    for key in ("price", "volume", "open", "high", "low", "close"):
        assert isinstance(candle[key], str) and EXACT.fullmatch(candle[key]), (key, candle)
    stored = _one(
        run["db"],
        "SELECT close FROM marketdata_candle WHERE symbol = ? AND interval = ? AND timestamp = ?",
        candle["symbol"],
        candle["interval"],
        candle["timestamp"],
    )
    assert Decimal(candle["close"]) == Decimal(str(stored))
    for key in ("price", "confidence"):
        assert isinstance(signal_[key], str) and EXACT.fullmatch(signal_[key]), (key, signal_)
    assert 0 <= Decimal(signal_["confidence"]) <= 1

    token = _token(run["port"])
    chart = _get(run["port"], "/api/chart/?symbol=BTC_USDT&limit=50", token)
    assert chart["candles"] and chart["indicators"]
    for bar in chart["candles"]:
        assert type(bar["time"]) is int
        for key in ("open", "high", "low", "close", "volume"):
            assert isinstance(bar[key], str) and EXACT.fullmatch(bar[key]), (key, bar)
    last = chart["candles"][-1]
    stored = _one(
        run["db"],
        "SELECT close FROM marketdata_candle WHERE symbol = 'BTC_USDT' AND interval = '1m' AND timestamp = ?",
        last["time"],
    )
    assert Decimal(last["close"]) == Decimal(str(stored))
    values = [value for line in chart["indicators"] for _, value in line["values"]]
    assert values and all(isinstance(v, str) and re.fullmatch(r"-?" + EXACT.pattern, v) for v in values)
    coarse = _get(run["port"], "/api/chart/?symbol=BTC_USDT&interval=5m&limit=5", token)  # resampled, still exact
    assert all(isinstance(bar["volume"], str) and EXACT.fullmatch(bar["volume"]) for bar in coarse["candles"])


def _refused_serve(env: dict[str, str], cwd, *args: str) -> str:
    """`manage.py serve` that must stop before serving: exit 2 with one line on stderr, which is returned."""
    done = processes.run(
        [sys.executable, str(ROOT / "manage.py"), "serve", *args, "--port", str(free_port())],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "serving at" not in done.stdout
    return lines[0]


def test_a_second_server_on_one_database_is_refused_and_a_crashed_one_leaves_no_lock(tmp_path):
    db = tmp_path / "db.sqlite3"
    env = _env(db)
    first, _ = _serve(env, tmp_path, "first", "--feed", "none")
    try:
        line = _refused_serve(env, ROOT, "--feed", "none")
        assert f"another `manage.py serve` (pid {first.popen.pid}) is serving {db} already" in line
        # the same file under another name (a symbolic link, a hard link, a relative path) is the same database
        link = tmp_path / "elsewhere" / "link.sqlite3"
        link.parent.mkdir()
        link.symlink_to(db)
        hard = tmp_path / "elsewhere" / "hard.sqlite3"
        hard.hardlink_to(db)
        for url in (f"sqlite:///{link}", f"sqlite:///{hard}", "sqlite:///db.sqlite3"):
            line = _refused_serve({**env, "DATABASE_URL": url}, tmp_path, "--feed", "none")
            assert f"(pid {first.popen.pid}) is serving" in line, (url, line)
    finally:
        first.stop(signal.SIGKILL)  # a crash: no clean-up ran
    again, _ = _serve(env, tmp_path, "again", "--feed", "none")  # the lock went with the process
    _stop(again)


def test_serve_on_an_unmigrated_database_is_a_one_line_error(tmp_path):
    """`manage.py serve` alone on a new file (not `make run`, which migrates first): a sentence naming the command
    that sets the database up, exit 2, never a traceback nor a server answering 500s."""
    line = _refused_serve(_env(tmp_path / "new.sqlite3"), ROOT)
    assert "run `python manage.py migrate` first" in line and str(tmp_path / "new.sqlite3") in line, line


def _login(page, port: int, path: str = "/") -> None:
    page.goto(f"http://127.0.0.1:{port}/accounts/login/?next={path}")
    page.fill("#id_username", USER)
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"http://127.0.0.1:{port}{path}")


def _risk_status_entry_prices(env) -> dict[str, str]:
    out = _manage(env, "risk_status").stdout
    return dict(re.findall(r"^  ([A-Z]+_USDT) +[\d,.]+ [A-Z]+ @ ([\d,.]+) USDT", out, re.M))


@pytest.mark.browser
def test_admin_and_dashboard_as_people_read_them(run):
    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect
    port, db = run["port"], run["db"]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        _login(page, port)
        base = f"http://127.0.0.1:{port}"

        # Orders: quantity in the base asset, price and fees in the quote's places, the exact value in the title;
        # the market clock's time and the server's, each labelled
        page.goto(f"{base}/admin/execution/order/")
        headers = page.locator("#result_list thead th").all_text_contents()
        assert any("(wall time, UTC)" in h for h in headers), headers
        row = page.locator("#result_list tbody tr").first
        cells = row.locator("td, th").all_text_contents()
        text = " | ".join(cells)
        assert re.search(ISO, text), text
        assert re.search(r"\| [\d,.]+ (BTC|ETH|SOL|XRP) \|", text), text  # quantity with its base asset
        assert re.search(r"\| \d{1,3}(,\d{3})*\.\d{2} USDT$", text), text  # fees (the last column), to the cent
        assert not re.search(r"\d\.\d*0000(?!\d)", text), text  # not the store's 12 places
        titled = row.locator("span[title]").first.get_attribute("title")
        assert EXACT.fullmatch(titled), titled
        order_id = _one(db, "SELECT id FROM execution_order WHERE price IS NOT NULL ORDER BY id LIMIT 1")
        page.goto(f"{base}/admin/execution/order/{order_id}/change/")
        detail = page.locator("#content").inner_text()
        assert "(market time, UTC)" in detail and re.search(ISO, detail), detail
        stored_price = Decimal(str(_one(db, "SELECT price FROM execution_order WHERE id = ?", order_id)))
        assert page.locator(f"span[title='{format(stored_price.normalize(), 'f')}']").count() >= 1
        assert not re.search(r"\d\.\d*0000(?!\d)", detail), detail

        # The book: the account's money in USDT to the cent
        page.goto(f"{base}/admin/execution/portfolio/1/change/")
        detail = page.locator("#content").inner_text()
        assert re.search(r"\d{1,3}(,\d{3})*\.\d{2} USDT", detail), detail
        assert not re.search(r"\d\.\d{9,}", detail), detail

        # Candles: prices and volume, the market time of each; newest first, as every history list
        newest = _one(db, "SELECT MAX(timestamp) FROM marketdata_candle")
        page.goto(f"{base}/admin/marketdata/candle/")
        text = " | ".join(page.locator("#result_list tbody tr").first.locator("td, th").all_text_contents())
        first = re.search(ISO, text).group(0)
        assert first >= datetime.fromtimestamp(newest / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), (first, newest)
        assert re.search(ISO, text) and " USDT" in text, text
        headers = " ".join(page.locator("#result_list thead th").all_text_contents())
        assert "(market time, UTC)" in headers, headers

        # Risk parameters under SPEC §4's names; a _PCT value read as the fraction it is, and in percent
        page.goto(f"{base}/admin/risk/riskparameters/")
        headers = " ".join(page.locator("#result_list thead th").all_text_contents())
        for name in ("MAX_DAILY_DRAWDOWN_PCT", "MAX_POSITION_PCT", "STOP_LOSS_PCT", "DATA_STALE_TIMEOUT_SEC"):
            assert name in headers, headers
        assert "0.05 (5.00 %)" in page.locator("#result_list tbody").inner_text()
        page.goto(f"{base}/admin/risk/riskparameters/1/change/")
        expect(page.locator("label[for=id_max_position_pct]")).to_have_text("MAX_POSITION_PCT:")

        # The kill switch follows the state: ACTIVE → Halt only; HALTED → Release only
        page.goto(f"{base}/admin/risk/tradingstate/")
        expect(page.locator("button.cdb-halt")).to_be_enabled()
        expect(page.locator("button.cdb-release")).to_be_disabled()
        page.on("dialog", lambda dialog: dialog.accept())
        page.fill("#id_reason", "admin check")
        page.click("button.cdb-halt")
        expect(page.locator(".messagelist")).to_contain_text("Trading HALTED: admin check")
        expect(page.locator("button.cdb-halt")).to_be_disabled()
        expect(page.locator("button.cdb-release")).to_be_enabled()
        page.click("button.cdb-release")
        expect(page.locator(".messagelist")).to_contain_text("Trading ACTIVE")
        expect(page.locator("button.cdb-release")).to_be_disabled()

        # One price, one precision: risk_status and the dashboard's positions
        page.goto(f"{base}/")
        expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=20_000)
        expect(page.locator("#positions tbody tr").first).to_be_visible(timeout=60_000)
        for _ in range(5):  # a fill between the two readings moves an average: read again
            shell = _risk_status_entry_prices(run["env"])
            shown = {
                tr.locator("td").nth(0).inner_text(): tr.locator("td").nth(2).inner_text()
                for tr in page.locator("#positions tbody tr").all()
            }
            if shell and shell == shown:
                break
            time.sleep(1)
        assert shell and shell == shown, (shell, shown)

        # An API error in the halt dialog reads as a sentence (a reason longer than the API takes)
        page.click("#halt-button")
        page.evaluate("document.getElementById('state-reason-input').value = 'x'.repeat(501)")
        page.click("#state-confirm")
        error = page.locator("#state-dialog-error")
        expect(error).to_have_text("reason: Ensure this field has no more than 500 characters. (HTTP 400)")
        assert "{" not in error.inner_text() and "[" not in error.inner_text()
        page.click("#state-cancel")
        expect(page.locator("#state")).to_have_text("ACTIVE")

        # …and so does one on the backtest pages
        page.goto(f"{base}/backtests/99999/")
        expect(page.locator(".error")).to_have_text("Could not load: no such run (HTTP 404)")
        browser.close()


def test_risk_status_says_what_a_pct_parameter_is(run):
    out = _manage(run["env"], "risk_status").stdout
    assert "Parameters: (a _PCT value is a fraction: 0.05 = 5 %)" in out, out
    assert re.search(r"^  MAX_DAILY_DRAWDOWN_PCT +0\.05 \(5\.00 %\) +default", out, re.M), out
    assert re.search(r"exposure [\d,.]+ USDT \(\d+\.\d\d %\)  daily drawdown \d+\.\d\d %$", out, re.M), out


@pytest.mark.browser
def test_a_halt_typed_in_a_shell_joins_the_open_dashboards_alerts_table(run):
    """The shell's halt is stored as an alert without a push to the page: the snapshot the state change asks for
    brings it into the Alerts table (it used to appear only after a reload), once, and the release's too."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        _login(page, run["port"])
        expect(page.locator("#connection")).to_have_text("live", timeout=30_000)  # the snapshot is in
        alerts = page.locator("#alerts tbody")
        # amounts in a message read exactly as the server wrote them (no trailing zero taken off)
        reason = "shell halt for the table at 10.00 % of 1,000.50 USDT, 0.02920500 ETH"
        _manage(run["env"], "halt", "--reason", reason, "--actor", "ops")
        expect(alerts).to_contain_text("shell halt for the table", timeout=10_000)
        stored = _one(run["db"], "SELECT message FROM risk_alert WHERE message LIKE '%shell halt for the table%'")
        assert reason in stored, stored
        expect(alerts.locator("td.reason", has_text="shell halt for the table")).to_have_text(stored)
        _manage(run["env"], "release", "--reason", "shell release for the table", "--actor", "ops")
        expect(alerts).to_contain_text("shell release for the table", timeout=10_000)
        assert alerts.locator("tr", has_text="shell halt for the table").count() == 1  # merged once, not per refresh
        browser.close()


# The admin's list pages a trader opens, with what each shows: amounts, and times labelled with their clock.
ADMIN_LISTS = [
    "execution/order",
    "execution/trade",
    "execution/position",
    "risk/riskevent",
    "risk/alert",
    "risk/auditlog",
    "trading/signal",
    "marketdata/candle",
    "marketdata/datafreshness",
    "marketdata/watchlistentry",
]
# In the page: cells cut off, and how far the page scrolls sideways beyond its window.
OVERFLOW = """() => {
  const visible = (el) => el.offsetParent !== null;
  const cut = [...document.querySelectorAll("table td, table th")].filter(
    (td) => visible(td) && td.scrollWidth > td.clientWidth + 1).map((td) => td.textContent.trim().slice(0, 60));
  const box = document.querySelector("#changelist .results");
  return {cut, sideways: document.documentElement.scrollWidth - document.documentElement.clientWidth,
          list_sideways: box ? box.scrollWidth - box.clientWidth : 0};
}"""
PERCENT = r"-?\d{1,3}(,\d{3})*\.\d{2} %"


@pytest.mark.browser
@pytest.mark.parametrize(("width", "height"), [(1280, 800), (1920, 1080)])
def test_admin_amounts_and_times_at_1280_and_1920_px(run, width, height):
    """Issue 22's last review, item 6: the admin, the amounts and the times read as they should at both widths —
    no cell cut off, no page wider than the window, every time ISO 8601 UTC with its clock named in the column,
    and the dashboard's percentages in the one shape the commands print (``ground.amounts.percent``). At 1280 px
    the admin's lists fit their box without scrolling sideways (with the navigation sidebar they had 631 px, and
    orders needed 905)."""
    from tests.e2e.test_first_hour import ARTIFACTS, CLIPPED

    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect
    port = run["port"]
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.url}: {r.status}"))
        _login(page, port)
        expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=20_000)
        expect(page.locator("#order-results tbody tr").first).to_be_visible(timeout=20_000)
        expect(page.locator("#trades-totals")).to_contain_text("win rate", timeout=20_000)
        drawdown = page.locator("#drawdown").inner_text()
        assert re.fullmatch(rf"\+?{PERCENT} · drawdown {PERCENT} of limit 5\.00 %", drawdown), drawdown
        exposure = page.locator("#exposure-limit").inner_text()
        assert re.fullmatch(rf"{PERCENT} of equity · limit 50\.00 %", exposure), exposure
        totals = page.locator("#trades-totals").inner_text()
        assert re.search(r"win rate (–|\d{1,3}\.\d %)", totals), totals
        assert page.evaluate(CLIPPED) == [], f"dashboard at {width}px"
        page.screenshot(path=str(ARTIFACTS / f"review-dashboard-{width}x{height}.png"))
        for path in ADMIN_LISTS:
            page.goto(f"{base}/admin/{path}/")
            expect(page.locator("#content h1")).to_be_visible()
            measured = page.evaluate(OVERFLOW)
            assert measured == {"cut": [], "sideways": 0, "list_sideways": 0}, (path, width, measured)
            headers = page.locator("#result_list thead th").all_text_contents()
            body = page.locator("#result_list tbody").inner_text() if page.locator("#result_list").count() else ""
            timed = [h for h in headers if "UTC" in h]
            assert all(re.search(r"\((market|wall) time, UTC\)", h) for h in timed), (path, headers)
            if timed and body:
                assert re.search(ISO, body), (path, body[:500])
            assert not re.search(r"\d\.\d*0000(?!\d)", body), (path, body[:500])  # not the store's 12 places
            assert not re.search(r"\b\d{13}\b", body), (path, body[:500])  # no epoch milliseconds for people
            page.screenshot(path=str(ARTIFACTS / f"review-admin-{path.replace('/', '-')}-{width}x{height}.png"))
        assert not errors, errors
        browser.close()
