"""The executor through its shell: partial fills, exits with P&L after fees, cash limits, reconciliation."""

from datetime import timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from prometheus_client import REGISTRY

from cdb_project import bus
from execution.models import Order, Portfolio, Position, Trade
from execution.service import execute_order
from risk.models import Alert
from tests.support import series

pytestmark = pytest.mark.django_db(transaction=True)
CROSS_TS = series.BASE_TS + series.CROSS_INDEX * series.STEP_MS


@pytest.fixture(autouse=True)
def _strategy(sma_cross):
    """The crafted series buys 9.09090909 TEST_USDT at 110.055 at candle 25 (volume 125)."""


def _sell_signal(ts=CROSS_TS, signal_id="exit-1"):
    bus.publish(
        {
            "type": "signal",
            "symbol": "TEST_USDT",
            "side": "SELL",
            "confidence": 0.6,
            "reason": "exit",
            "timestamp": ts,
            "signal_id": signal_id,
        }
    )


def test_thin_volume_fills_part_of_the_entry(settings):
    settings.PAPER_MAX_VOLUME_SHARE = "0.05"  # 0.05 × 125 = 6.25 of the 9.09090909 asked
    series.publish_all(series.events())
    order = Order.objects.get()
    assert (order.status, order.filled_quantity, order.quantity) == ("PARTIALLY_FILLED", D("6.25"), D("9.09090909"))
    assert Position.objects.get().quantity == D("6.25") and Trade.objects.get().quantity == D("6.25")
    assert "thin volume" in order.reason


def test_exit_closes_the_trade_with_profit_after_fees():
    series.publish_all(series.events())
    _sell_signal()
    entry, exit_ = Order.objects.get(side="BUY"), Order.objects.get(side="SELL")
    q = D("9.09090909")
    assert exit_.status == "FILLED" and exit_.quantity == q and exit_.price == D("109.945")  # 110 × 0.9995
    trade = Trade.objects.get()
    entry_cost = entry.price * q + entry.fees  # 110.055 × q + fee
    proceeds = exit_.price * q - exit_.fees
    assert trade.status == "CLOSED" and trade.exit_reason == "signal"
    assert trade.profit_loss == (proceeds - entry_cost).quantize(D("1e-12"))
    assert trade.profit_loss_percent == (trade.profit_loss / entry_cost * 100).quantize(D("1e-6"))
    portfolio = Portfolio.load()
    assert Position.objects.get().quantity == 0
    # Round trip: the account lost exactly the slippage on both legs plus both fees.
    assert portfolio.cash == D("10000") + trade.profit_loss
    assert portfolio.fees_paid == entry.fees + exit_.fees


def test_an_order_the_cash_cannot_pay_fails_and_changes_nothing(settings):
    settings.PAPER_MAX_VOLUME_SHARE = "0"  # no partial fill: the whole 1,000 × 97.6 must be paid
    series.publish_all(series.events()[:-1])
    Order.objects.create(
        client_order_id="cdbtoobig",
        symbol="TEST_USDT",
        side="BUY",
        quantity=D("1000"),
        requested_price=D("97.6"),
        event_time=CROSS_TS - series.STEP_MS,
    )
    order = execute_order({"client_order_id": "cdbtoobig"})
    assert order.status == "FAILED" and "insufficient cash" in order.reason
    assert Portfolio.load().cash == D("10000") and not Position.objects.filter(quantity__gt=0).exists()
    assert Alert.objects.filter(code="ORDER_FAILED", symbol="TEST_USDT").exists()


def test_a_settled_order_is_never_executed_again():
    series.publish_all(series.events())
    order = Order.objects.get()
    cash = Portfolio.load().cash
    again = execute_order({"client_order_id": order.client_order_id})
    assert again.status == "FILLED" and Portfolio.load().cash == cash and Trade.objects.count() == 1


def test_reconcile_settles_old_pending_orders_once():
    series.publish_all(series.events()[:-1])
    Order.objects.create(
        client_order_id="cdbstale",
        symbol="TEST_USDT",
        side="BUY",
        quantity=D("1"),
        requested_price=D("97.6"),
        event_time=CROSS_TS - series.STEP_MS,
    )
    Order.objects.create(
        client_order_id="cdbfresh",
        symbol="TEST_USDT",
        side="BUY",
        quantity=D("1"),
        requested_price=D("97.6"),
        event_time=CROSS_TS - series.STEP_MS,
    )
    Order.objects.filter(client_order_id="cdbstale").update(created_at=timezone.now() - timedelta(minutes=5))
    out = StringIO()
    call_command("reconcile_orders", stdout=out)
    assert "cdbstale BUY TEST_USDT: FILLED" in out.getvalue() and "reconciled 1 order(s)" in out.getvalue()
    assert Order.objects.get(client_order_id="cdbfresh").status == "PENDING"
    call_command("reconcile_orders", "--older-than", "0", stdout=StringIO())
    assert Order.objects.filter(status="FILLED").count() == 2 and Trade.objects.count() == 2


def test_metrics_count_trades_and_failures(settings):
    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = sample("trades_total", side="BUY"), sample("order_latency_seconds_count")
    series.publish_all(series.events())
    assert sample("trades_total", side="BUY") == before[0] + 1
    assert sample("order_latency_seconds_count") == before[1] + 1
    failed = sample("trades_failed_total", status="FAILED")
    settings.PAPER_FAILURE_RATE = "1"
    _sell_signal()
    assert sample("trades_failed_total", status="FAILED") == failed + 1


def test_a_pending_sell_keeps_its_value_in_the_equity(settings):
    # Bought 9.09090909 TEST_USDT at 110.055 (cost ≈ 1,001.05 with fees). An approved exit for all of it that
    # workers have not executed yet (PENDING) takes the units out of the account's positions, so nothing is
    # sold twice; its proceeds, 9.09090909 × 110.055 × 0.9995 × 0.999 ≈ 998.99, stay in the equity. Counted as
    # nothing, equity would fall to the cash ≈ 8,998.95 — a 10 % "drawdown" that halts trading at the next candle.
    from django.db import transaction

    from execution.account import load_account
    from marketdata.ingest import market_data_event
    from risk.models import TradingState

    series.publish_all(series.events())
    entry = Order.objects.get()
    Order.objects.create(
        client_order_id="cdbpendingexit",
        symbol="TEST_USDT",
        side="SELL",
        quantity=entry.filled_quantity,
        requested_price=D("110.055"),
        event_time=CROSS_TS,
        purpose=Order.Purpose.EXIT,
    )
    with transaction.atomic():
        account = load_account("ACTIVE", CROSS_TS, ("TEST_USDT",))
    proceeds = entry.filled_quantity * D("110.055") * D("0.9995") * D("0.999")
    assert account.positions == {} and account.cash == Portfolio.load().cash
    assert account.receivable == proceeds and account.equity == Portfolio.load().cash + proceeds
    assert account.daily_drawdown < D("0.001")
    price = 110.055
    bus.publish(market_data_event("TEST_USDT", "1m", CROSS_TS + series.STEP_MS, price, price, price, price, 100))
    assert TradingState.load().state == "ACTIVE"
