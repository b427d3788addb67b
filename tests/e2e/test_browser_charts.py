"""The trader's view in a real browser: lightweight-charts candles, indicators, fills, closed trades, backtests.

Debian's Chromium (Playwright) against a real daphne on the PostgreSQL test database and Redis, after a replay of
recorded candles through the real pipeline (momentum, paper fills). What the charts hold is read back through
lightweight-charts' own API in the page (``window.cdbCharts``) and compared with the database and the API.
Screenshots at 1280×800 and 1920×1080 go to artifacts/browser/ and, when missing or with
UPDATE_README_SCREENSHOT=1, to docs/ (the pictures of docs/dashboard-and-api.md and docs/backtest.md).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections

from execution.models import Order, Trade
from ground import amounts, bus
from marketdata.models import Candle
from tests.e2e.test_browser_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TIMEOUT, _user, off_loop
from tests.support import processes
from tests.support.paths import CANDLES
from trading.backtest_report import amounts as backtest_amounts
from trading.indicators import EMA, RSI
from trading.models import BacktestRun

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
expect.set_options(timeout=20_000)

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DATA = CANDLES / "ETH_BTC-5m.csv"
SYMBOL = "ETH_BTC"
ROWS = 700
FIVE_MIN = 300_000


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def momentum(settings):
    """The default strategy, in this process (eager tasks) and in daphne; capital in BTC, the quote currency."""
    settings.STRATEGY = "momentum"
    settings.PAPER_FAILURE_RATE = "0"
    settings.INITIAL_CAPITAL = "1"


@pytest.fixture
def server(django_db_setup, tmp_path, momentum):
    env = processes.child_env(PAPER_FAILURE_RATE="0", STRATEGY="momentum", INITIAL_CAPITAL="1")
    process = processes.start_daphne(env, tmp_path)
    yield process
    process.stop()
    print(process.output()[-20_000:])


@pytest.fixture
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        # ORM calls beside Playwright's event loop ran on a connection of that loop's context: close it here.
        connections.close_all()
        instance.close()


class Watched:
    """A page whose console errors, failed requests and requests leaving 127.0.0.1 are recorded."""

    def __init__(self, browser, width: int, height: int):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.set_default_timeout(TIMEOUT)
        self.outside: list[str] = []
        self.problems: list[str] = []
        self.context.route("**/*", self._offline)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status} {r.url}"))

    def _offline(self, route):
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def _failed(self, request):
        if "ERR_ABORTED" not in (request.failure or ""):  # a fetch the page itself cancelled (a newer one won)
            self.problems.append(f"failed: {request.url} {request.failure}")

    def login(self, port: int, name: str) -> None:
        page = self.page
        page.goto(f"http://127.0.0.1:{port}/accounts/login/?next=/")
        page.fill("#id_username", name)
        page.fill("#id_password", f"{name}-password")
        page.click("#login-submit")
        expect(page.locator("body")).to_have_attribute("data-connection", "live")

    def check_clean(self) -> None:
        assert not self.problems, self.problems
        assert not self.outside, self.outside

    def shot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        if not (DOCS / path.name).exists() or os.environ.get("UPDATE_README_SCREENSHOT") == "1":
            shutil.copyfile(path, DOCS / path.name)
        return path

    def close(self) -> None:
        self.context.close()


def replay(tmp_path: Path, rows: int = ROWS) -> Path:
    lines = DATA.read_text().splitlines()
    data = [line for line in lines if line and line[0].isdigit()][:rows]
    path = tmp_path / f"{SYMBOL}-5m.csv"
    path.write_text("\n".join(data) + "\n")
    off_loop(call_command, "run_feed", "--source", "replay", "--data", str(path), "--no-progress", "--speed", "max")
    return path


def read_chart(page) -> dict:
    return page.evaluate("window.cdbCharts.price.readBack()")


@pytest.mark.shared_data
def test_chart_after_a_replay_shows_candles_indicators_and_one_marker_per_fill(server, browser, tmp_path):
    replay(tmp_path)
    fills = list(Order.objects.filter(symbol=SYMBOL, status__in=["FILLED", "PARTIALLY_FILLED"]).order_by("event_time"))
    assert len(fills) >= 4, "the replay should trade: entries and exits to draw"
    _user("trader")

    watched = Watched(browser, 1280, 800)
    page = watched.page
    watched.login(server.port, "trader")
    chart = page.locator("#price-chart")
    expect(chart).to_have_attribute("data-state", "ready")
    expect(chart).to_have_attribute("data-symbol", SYMBOL)
    got = read_chart(page)

    # Candles and volume: the newest 300 stored 5m candles, at their open times and prices.
    assert len(got["candles"]) == 300 and got["volume"] == 300
    first, last = got["candles"][0]["time"], got["candles"][-1]["time"]
    stored = list(Candle.objects.filter(symbol=SYMBOL, timestamp__gte=first).order_by("timestamp"))
    assert [c.timestamp for c in stored] == [c["time"] for c in got["candles"]]
    assert [float(c.close) for c in stored] == [c["close"] for c in got["candles"]]

    # The strategy's overlays and the RSI pane, computed by trading/indicators.py, not in JavaScript.
    assert set(got["lines"]) == {"EMA12", "EMA26", "SMA50", "RSI14"}, got["lines"]
    assert all(n >= 250 for n in got["lines"].values()), got["lines"]
    assert got["panes"] == 2
    closes = [float(c.close) for c in Candle.objects.filter(symbol=SYMBOL).order_by("timestamp")]
    ema, rsi = EMA(12), RSI(14)
    for close in closes:
        ema_value, rsi_value = ema.update(close), rsi.update(close)
    assert got["last"]["EMA12"] == pytest.approx(ema_value, rel=1e-9)
    assert got["last"]["RSI14"] == pytest.approx(rsi_value, rel=1e-9)

    # One marker per fill in the shown range, at its bar and price: ▲ for a BUY, ▼ for a SELL.
    shown = [o for o in fills if first <= o.event_time <= last + FIVE_MIN - 1]
    assert shown, "fills inside the newest 300 candles"
    expected = sorted(
        (o.event_time - o.event_time % FIVE_MIN, float(o.price), "arrowUp" if o.side == "BUY" else "arrowDown")
        for o in shown
    )
    assert sorted((m["time"], m["price"], m["shape"]) for m in got["markers"]) == expected
    # The stop of each open lot is a line.
    open_lots = Trade.objects.filter(symbol=SYMBOL, status="OPEN").count()
    assert len(got["stops"]) == open_lots
    # titled with the lot's quantity in its base asset: "stop · 0.02920517 ETH"
    lots = Trade.objects.filter(symbol=SYMBOL, status="OPEN").exclude(stop_loss=None).order_by("entry_time", "id")
    assert lots and got["stopTitles"] == [
        f"stop · {lot.quantity.normalize():,f} {SYMBOL.split('_')[0]}" for lot in lots
    ]

    # Hovering an entry's bar shows its card: quantity, price, fee.
    buy = next(o for o in shown if o.side == "BUY")
    bar_time = buy.event_time - buy.event_time % FIVE_MIN
    page.evaluate("t => window.cdbCharts.price.centreOn(t)", bar_time)
    page.wait_for_function(  # the bar is on screen (polled on animation frames, so after a redraw)
        "t => { const s = window.cdbCharts.price.chart.timeScale(), x = s.timeToCoordinate(t / 1000);"
        " return x !== null && x >= 0 && x <= s.width(); }",
        arg=bar_time,
    )
    x, y = page.evaluate(
        "([t, p]) => { const c = window.cdbCharts.price;"
        " return [c.chart.timeScale().timeToCoordinate(t / 1000), c.candleSeries.priceToCoordinate(p)]; }",
        [bar_time, float(buy.price)],
    )
    box = chart.bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    tooltip = page.locator("#price-chart .chart-tooltip")
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text("BUY")
    expect(tooltip).to_contain_text("fee")
    page.mouse.move(5, 5)

    # A live candle moves the last bar: the next 5m candle arrives over the websocket.
    nxt = last + FIVE_MIN
    close = float(stored[-1].close) * 1.01
    off_loop(
        bus.publish,
        {
            "type": "market_data",
            "symbol": SYMBOL,
            "interval": "5m",
            "timestamp": nxt,
            "open": float(stored[-1].close),
            "high": close * 1.001,
            "low": float(stored[-1].close) * 0.999,
            "price": close,
            "volume": 123.0,
        },
    )
    page.wait_for_function(
        "t => { const c = window.cdbCharts.price.readBack().candles; return c[c.length - 1].time === t; }", arg=nxt
    )
    moved = read_chart(page)
    assert moved["candles"][-1]["close"] == pytest.approx(close)

    # The interval chooser resamples on the server: 15m bars, the same overlays.
    page.select_option("#chart-interval", "15m")
    expect(chart).to_have_attribute("data-interval", "15m")
    expect(chart).to_have_attribute("data-state", "ready")
    fifteen = read_chart(page)
    assert all(c["time"] % (3 * FIVE_MIN) == 0 for c in fifteen["candles"])
    assert set(fifteen["lines"]) == {"EMA12", "EMA26", "SMA50", "RSI14"}
    page.select_option("#chart-interval", "5m")
    expect(chart).to_have_attribute("data-interval", "5m")
    expect(chart).to_have_attribute("data-state", "ready")

    # The watch list: % change and quote volume over LOOKBACK_MINUTES, as the screener ranks them.
    row = page.locator("#watchlist tbody tr", has_text=SYMBOL)
    expect(row.locator("td").nth(3)).to_contain_text("%")
    expect(row.locator("td").nth(4)).not_to_have_text("–")

    # Closed trades: totals equal what /api/trades/ lists, a page of rows, a click centres the chart on one.
    closed = _all(page, "/api/trades/?status=CLOSED&page_size=500")
    assert closed and len(closed) == Trade.objects.filter(status="CLOSED").count()
    totals = page.locator("#trades-totals")
    expect(totals).to_have_attribute("data-trades", str(len(closed)))
    assert _decimal(totals.get_attribute("data-profit-loss")) == sum(_decimal(t["profit_loss"]) for t in closed)
    rows = page.locator("#closed-trades tbody tr")
    expect(rows).to_have_count(min(20, len(closed)))
    oldest = closed[-1]
    day = oldest["exit_time"][:10]
    page.fill("#trades-day", day)
    on_day = [t for t in closed if t["exit_time"][:10] == day]
    expect(totals).to_have_attribute("data-trades", str(len(on_day)))
    expect(rows).to_have_count(min(20, len(on_day)))
    rows.last.click()
    entry_ms = _ms(on_day[-1]["entry_time"])
    page.wait_for_function(
        """t => { const r = window.cdbCharts.price.chart.timeScale().getVisibleRange();
                  return r && r.from * 1000 <= t && t <= r.to * 1000; }""",
        arg=entry_ms,
    )
    page.fill("#trades-day", "")
    expect(totals).to_have_attribute("data-trades", str(len(closed)))

    watched.shot("dashboard-1280x800")
    watched.check_clean()
    watched.close()

    wide = Watched(browser, 1920, 1080)
    wide.login(server.port, "trader")
    expect(wide.page.locator("#price-chart")).to_have_attribute("data-state", "ready")
    wide.shot("dashboard-1920x1080")
    wide.check_clean()
    wide.close()


def _json(page, url: str) -> dict:
    return json.loads(page.evaluate("async u => JSON.stringify(await (await fetch(u)).json())", url))


def _all(page, url: str) -> list[dict]:
    """Every row of a paginated API list, fetched from the page with its session."""
    rows, body = [], _json(page, url)
    rows += body["results"]
    while body["next"]:
        body = _json(page, body["next"])
        rows += body["results"]
    return rows


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _decimal(text) -> Decimal:
    return Decimal(str(text))


@pytest.mark.shared_data
def test_a_stored_backtest_opens_with_its_trades_on_the_chart(server, browser, tmp_path):
    """``manage.py backtest --save`` twice; the list shows both, one opens with dated equity and drawdown curves,
    its candles and one marker per fill (equal to its report's trades), and two open side by side."""
    lines = [line for line in DATA.read_text().splitlines() if line and line[0].isdigit()][:1500]
    path = tmp_path / f"{SYMBOL}-5m.csv"
    path.write_text("\n".join(lines) + "\n")
    common = ["--data", str(path), "--no-progress", "--save"]
    off_loop(call_command, "backtest", *common, "--capital", "1", stdout=io.StringIO())
    out = io.StringIO()
    off_loop(call_command, "backtest", *common, "--capital", "10000", stdout=out)  # 10,000 BTC: entries cut
    assert "PAPER_MAX_VOLUME_SHARE" in out.getvalue() and "Try --capital" in out.getvalue()
    small, large = BacktestRun.objects.order_by("id")
    assert small.report["summary"]["warnings"] == [] and large.report["summary"]["warnings"]
    _user("analyst")

    watched = Watched(browser, 1280, 800)
    page = watched.page
    watched.login(server.port, "analyst")
    page.click("text=Backtests")
    expect(page.locator("#backtests-app")).to_have_attribute("data-state", "ready")
    expect(page.locator("#runs tbody tr")).to_have_count(2)
    expect(page.locator("#runs tbody tr").first).to_contain_text("Try --capital")  # the newest: the large capital
    expect(page.locator("#runs tbody tr").last).to_contain_text("1.00000000 BTC")  # --capital 1, not 1.000000000000
    page.click(f"a[href='/backtests/{small.pk}/']")
    expect(page.locator("#backtests-app")).to_have_attribute("data-state", "ready")
    expect(page.locator("#run-price")).to_have_attribute("data-state", "ready")

    report = small.report
    got = read_chart(page)
    assert len(got["candles"]) == report["candles"] == 1500
    assert got["candles"][0]["time"] == int(lines[0].split(",")[0])
    assert set(got["lines"]) == {"EMA12", "EMA26", "SMA50", "RSI14"}
    # One marker per fill, at the times and prices of the report's trades (a SELL that closes several lots is one).
    expected = {(t["entry_time"], float(t["entry_price"]), "arrowUp") for t in report["trades"]}
    expected |= {(t["exit_time"], float(t["exit_price"]), "arrowDown") for t in report["trades"] if t["exit_time"]}
    markers = {(m["time"], m["price"], m["shape"]) for m in got["markers"]}
    assert markers == expected
    fills = [o for o in report["orders"] if o["status"] in ("FILLED", "PARTIALLY_FILLED")]
    assert len(got["markers"]) == len(fills)
    # Equity and drawdown on dated axes: every point of the report's curve (one per second at most).
    assert int(page.locator("#a-equity").get_attribute("data-points")) == len(
        {t // 1000 for t, _ in report["equity_curve"]}
    )
    expect(page.locator("#run-trades tbody tr")).to_have_count(len(report["trades"]))
    expect(page.locator(".card", has_text="Capital")).to_contain_text("1.00000000 BTC")
    base = SYMBOL.split("_")[0]
    first = page.locator("#run-trades tbody tr").first.locator("td")
    expect(first.nth(2)).to_have_text(re.compile(r"^\d[\d,]*\.\d{8,} BTC$"))  # entry price, with its quote
    expect(first.nth(5)).to_have_text(re.compile(rf"^\d[\d,.]* {base}$"))  # quantity, in the base asset
    expect(first.nth(6)).to_have_text(re.compile(r"^[+-]?\d[\d,]*\.\d{8} BTC$"))  # P&L
    # one shape with the command and the HTML report (ground/amounts): ratios "0.42", durations "3h 40m", "stop-loss"
    shown = backtest_amounts(report)
    expect(page.locator(".card", has_text="Profit factor").locator("p")).to_have_text(shown["profit_factor"])
    expect(page.locator(".card", has_text="Sharpe").locator("p")).to_have_text(shown["sharpe"])
    # percentages as the command and the HTML report print them (ground.amounts.percent: half to even on the exact
    # value; the summary's *_pct are in percent, win rates fractions), the trades' P&L % too
    summary = report["summary"]

    def card(label: str):
        return page.locator(".card", has=page.get_by_role("heading", name=label, exact=True)).locator("p")

    for label, key in (("Return", "total_return_pct"), ("Max drawdown", "max_drawdown_pct"),
                       ("Time in market", "time_in_market_pct")):  # fmt: skip
        expect(card(label)).to_have_text(amounts.percent(summary[key], fraction=False))
    expect(card("Win rate")).to_have_text(amounts.percent(summary["win_rate"], 1))
    expect(first.nth(7)).to_have_text(amounts.percent(report["trades"][0]["profit_loss_percent"], fraction=False))
    expect(first.nth(8)).to_have_text(shown["trades"][0]["duration"])
    expect(first.nth(9)).to_have_text(shown["trades"][0]["exit_reason"])
    expect(page.locator("#run-trades")).not_to_contain_text(" min")
    expect(page.locator("#run-risk-events")).to_be_visible()
    watched.shot("backtest-1280x800")

    page.goto(f"http://127.0.0.1:{server.port}/backtests/{small.pk}/?compare={large.pk}")
    expect(page.locator("#backtests-app")).to_have_attribute("data-state", "ready")
    expect(page.locator("#run-a .run-title")).to_contain_text(f"#{small.pk}")
    expect(page.locator("#run-b .run-title")).to_contain_text(f"#{large.pk}")
    expect(page.locator("#run-b .warning")).to_contain_text("PAPER_MAX_VOLUME_SHARE")
    watched.shot("backtest-compare-1280x800")
    watched.check_clean()
    watched.close()


@pytest.mark.shared_data
def test_the_standalone_html_report_draws_the_same_charts_offline(browser, tmp_path):
    """``backtest --html``: the file alone (file://, every other request refused) draws the equity, the drawdown and
    a candlestick chart per symbol whose markers are the report's fills."""
    lines = [line for line in DATA.read_text().splitlines() if line and line[0].isdigit()][:1500]
    path = tmp_path / f"{SYMBOL}-5m.csv"
    path.write_text("\n".join(lines) + "\n")
    html, js = tmp_path / "report.html", tmp_path / "report.json"
    args = ["--data", str(path), "--capital", "1", "--no-progress", "--html", str(html), "--json", str(js)]
    call_command("backtest", *args, stdout=io.StringIO())
    report = json.loads(js.read_text())

    watched = Watched(browser, 1280, 800)
    watched.context.unroute("**/*")
    watched.context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(("file://", "data:"))
            else (watched.outside.append(route.request.url), route.abort())
        ),
    )
    page = watched.page
    page.goto(html.as_uri())
    page.wait_for_function("window.cdbCharts && window.cdbCharts.prices && window.cdbCharts.prices.ETH_BTC")
    got = page.evaluate("window.cdbCharts.prices.ETH_BTC.readBack()")
    assert len(got["candles"]) == 1500 and got["volume"] == 1500
    assert set(got["lines"]) == {"EMA12", "EMA26", "SMA50", "RSI14"}
    fills = [o for o in report["orders"] if o["status"] in ("FILLED", "PARTIALLY_FILLED")]
    assert sorted((m["time"], m["price"]) for m in got["markers"]) == sorted(
        (o["timestamp"], float(o["price"])) for o in fills
    )
    assert int(page.locator("#equity").get_attribute("data-points")) > 1
    assert int(page.locator("#drawdown").get_attribute("data-points")) > 1
    page.screenshot(path=str(ARTIFACTS / "backtest-html.png"))
    watched.check_clean()
    watched.close()
