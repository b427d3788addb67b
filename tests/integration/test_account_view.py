"""One account view (risk/account_view.py): the risk engine, ``manage.py risk_status``, the dashboard's snapshot,
``/api/status/``, ``/metrics`` and the daily report give one crafted account the same equity, daily P&L and
drawdown, before the day's first event has set the day's start and after it."""

import json
from datetime import UTC, datetime
from decimal import Decimal as D
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction
from prometheus_client.parser import text_string_to_metric_families

from execution.models import Order, Portfolio, Position
from marketdata.clock import ManualClock, use_clock
from marketdata.models import Candle
from notify.report import daily_report
from risk.account_view import load_account
from risk.models import TradingState

pytestmark = pytest.mark.django_db(transaction=True)  # /metrics closes an obsolete connection after reading
MIDNIGHT = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)
NOW = MIDNIGHT + 10 * 3_600_000 + 5 * 60_000  # 10:05 UTC
SLIPPAGE, FEE = D("0.0005"), D("0.001")

# The account: 2 BTC bought yesterday at 100 with a 0.2 fee; an approved, not yet executed SELL of 0.5 of them
# (decided at 110); BTC closed at 110 in the last minute before midnight and at 99 at 10:01 today.
CASH = D(10000) - 2 * D(100) - D("0.2")
RECEIVABLE = D("0.5") * 110 * (1 - SLIPPAGE) * (1 - FEE)  # the waiting SELL's proceeds stay in the equity
DAY_START = CASH + D("1.5") * 110 + RECEIVABLE
EQUITY = CASH + D("1.5") * 99 + RECEIVABLE
DAILY_PNL = D("1.5") * (99 - 110)  # -16.5: only the price move of what is still held
DRAWDOWN = -DAILY_PNL / DAY_START


def candle(ts: int, close: str) -> None:
    c = D(close)
    Candle.objects.create(symbol="BTC_USDT", interval="1m", timestamp=ts, open=c, high=c, low=c, close=c, volume=D(10))


@pytest.fixture
def account(settings):
    settings.PAPER_SLIPPAGE_PCT, settings.FEE_RATE = str(SLIPPAGE), str(FEE)
    settings.SYMBOL_WHITELIST = ["BTC_USDT"]
    settings.METRICS_TOKEN = "a-metrics-token-for-tests"
    candle(MIDNIGHT - 60_000, "110")  # known at 00:00
    candle(MIDNIGHT + 10 * 3_600_000, "99")  # known at 10:01
    Order.objects.create(
        client_order_id="yesterday-buy",
        symbol="BTC_USDT",
        side="BUY",
        quantity=D(2),
        requested_price=D(100),
        price=D(100),
        filled_quantity=D(2),
        fees=D("0.2"),
        status=Order.Status.FILLED,
        event_time=MIDNIGHT - 3_600_000,
    )
    Order.objects.create(
        client_order_id="waiting-sell",
        symbol="BTC_USDT",
        side="SELL",
        quantity=D("0.5"),
        requested_price=D(110),
        status=Order.Status.PENDING,
        event_time=MIDNIGHT - 60_000,
        purpose=Order.Purpose.EXIT,
    )
    Position.objects.create(symbol="BTC_USDT", quantity=D(2), cost_basis=D(200), avg_entry_price=D(100))
    portfolio = Portfolio.load()
    portfolio.initial_capital, portfolio.cash, portfolio.fees_paid = D(10000), CASH, D("0.2")
    portfolio.day, portfolio.day_start_equity = datetime(2024, 10, 31).date(), D("9999.8")  # yesterday's
    portfolio.save()
    TradingState.load()


def readers(client) -> dict[str, tuple[D, D, D]]:
    """(equity, daily P&L, drawdown) as each reader reports them, at NOW."""
    out = {}
    with use_clock(ManualClock(NOW)):
        stdout = StringIO()
        call_command("risk_status", "--json", stdout=stdout)
        status = json.loads(stdout.getvalue())
        out["risk_status"] = (status["equity"], status["daily_pnl"], status["daily_drawdown_pct"])
        for name, url in (("dashboard", "/api/dashboard/snapshot/"), ("api_status", "/api/status/")):
            account = client.get(url).json()["account"]
            out[name] = (account["equity"], account["daily_pnl"], account["drawdown_pct"])
        report = daily_report()
        out["daily_report"] = (report["equity"], report["daily_pnl"], report["drawdown_pct"])
        text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer a-metrics-token-for-tests").content.decode()
    gauges = {family.name: family.samples[0].value for family in text_string_to_metric_families(text) if family.samples}
    metrics = (gauges["equity"], gauges["daily_pnl"], gauges["daily_drawdown_percent"] / 100)
    assert metrics == pytest.approx((float(EQUITY), float(DAILY_PNL), float(DRAWDOWN)), rel=1e-12)
    return {name: tuple(D(value) for value in values) for name, values in out.items()}


def engine() -> tuple[D, D, D]:
    """What the risk engine judges at NOW: the account under the lock, the day rolled by this first event."""
    with transaction.atomic():
        state = TradingState.load(for_update=True)
        account = load_account(state.state, NOW, for_decision=False)
    return account.equity, account.equity - account.day_start_equity, account.daily_drawdown


def test_every_reader_reports_the_engines_equity_daily_pnl_and_drawdown(account, client):
    client.force_login(User.objects.create_user("viewer", password="x", is_staff=True))
    expected = (EQUITY, DAILY_PNL, DRAWDOWN.quantize(D("1e-12")))

    before_the_roll = readers(client)  # the day's start is what the day's first event will set
    assert before_the_roll == dict.fromkeys(before_the_roll, expected)
    assert Portfolio.load().day_start_equity == D("9999.8")  # read without writing

    assert engine() == (EQUITY, DAILY_PNL, DRAWDOWN)
    assert Portfolio.load().day_start_equity == DAY_START

    after_the_roll = readers(client)  # the stored start
    assert after_the_roll == dict.fromkeys(after_the_roll, expected)
