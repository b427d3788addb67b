"""The executor through its shell: partial fills, exits with P&L after fees, cash limits, reconciliation.

A paper order is stored PENDING by its decision and fills at the open of its symbol's next candle."""

from datetime import timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from prometheus_client import REGISTRY

from execution.models import Order, Portfolio, Position, Trade
from ground import bus
from risk.models import Alert
from risk.order_executor import execute_order
from tests.support import series

pytestmark = pytest.mark.django_db(transaction=True)
CROSS_TS = series.BASE_TS + series.CROSS_INDEX * series.STEP_MS
NEXT_TS = CROSS_TS + series.STEP_MS  # the candle after the crossing, which fills its BUY
ENTRY_PRICE = D("110.2551")  # its open 110.2 × 1.0005 (the crossing's close was 110)


@pytest.fixture(autouse=True)
def _strategy(sma_cross):
    """The crafted series decides to buy 9.09090909 TEST_USDT at candle 25 (close 110); the BUY fills at the
    next candle's open, 110.2 × 1.0005 = 110.2551."""


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
    settings.PAPER_MAX_VOLUME_SHARE = "0.05"  # 0.05 × 140 (the fill candle's volume) = 7 of the 9.09090909 asked
    evts = series.events()  # the signal candle's volume is 125: 6.25 would be filled on it
    series.publish_all(evts)
    assert Order.objects.get().status == "PENDING" and not Position.objects.exists()
    bus.publish(series.next_event(evts, volume=140))
    order = Order.objects.get()
    assert (order.status, order.filled_quantity, order.quantity) == ("PARTIALLY_FILLED", D("7"), D("9.09090909"))
    assert order.price == ENTRY_PRICE
    assert Position.objects.get().quantity == D("7") and Trade.objects.get().quantity == D("7")
    assert "thin volume" in order.reason


def test_exit_closes_the_trade_with_profit_after_fees():
    evts = series.filled_events()
    series.publish_all(evts)
    _sell_signal(ts=NEXT_TS)  # decided at the close 110.4 of the fill candle
    assert Order.objects.get(side="SELL").status == "PENDING"
    bus.publish(series.next_event(evts, open_=111, close=111.5))  # the exit fills at 111 × 0.9995
    entry, exit_ = Order.objects.get(side="BUY"), Order.objects.get(side="SELL")
    q = D("9.09090909")
    assert entry.price == ENTRY_PRICE
    assert exit_.status == "FILLED" and exit_.quantity == q and exit_.price == D("110.9445")
    trade = Trade.objects.get()
    entry_cost = entry.price * q + entry.fees  # 110.2551 × q + fee
    proceeds = exit_.price * q - exit_.fees
    assert trade.status == "CLOSED" and trade.exit_reason == "signal"
    assert trade.profit_loss == (proceeds - entry_cost).quantize(D("1e-12"))
    assert trade.profit_loss_percent == (trade.profit_loss / entry_cost * 100).quantize(D("1e-6"))
    portfolio = Portfolio.load()
    assert Position.objects.get().quantity == 0
    # Round trip: the account gained the price move (110.2 → 111) less the slippage on both legs and both fees.
    assert portfolio.cash == D("10000") + trade.profit_loss
    assert portfolio.fees_paid == entry.fees + exit_.fees


def _no_cross_candle(evts: list[dict]) -> dict:
    """The candle after ``evts`` (the series without its crossing candle) falling on: no signal."""
    return series.next_event(evts, open_=97.6, close=97.5)


def test_an_order_the_cash_cannot_pay_fails_and_changes_nothing(settings):
    settings.PAPER_MAX_VOLUME_SHARE = "0"  # no partial fill: the whole 1,000 × 97.6 must be paid
    evts = series.events()[:-1]
    series.publish_all(evts)
    Order.objects.create(
        client_order_id="cdbtoobig",
        symbol="TEST_USDT",
        side="BUY",
        quantity=D("1000"),
        requested_price=D("97.6"),
        event_time=CROSS_TS - series.STEP_MS,
    )
    assert execute_order({"client_order_id": "cdbtoobig"}).status == "PENDING"  # paper: it waits for its candle
    bus.publish(_no_cross_candle(evts))
    order = Order.objects.get()
    assert order.status == "FAILED" and "insufficient cash" in order.reason
    assert Portfolio.load().cash == D("10000") and not Position.objects.filter(quantity__gt=0).exists()
    assert Alert.objects.filter(code="ORDER_FAILED", symbol="TEST_USDT").exists()


def test_a_settled_order_is_never_executed_again():
    evts = series.filled_events()
    series.publish_all(evts)
    order = Order.objects.get()
    cash = Portfolio.load().cash
    again = execute_order({"client_order_id": order.client_order_id})
    assert again.status == "FILLED" and Portfolio.load().cash == cash and Trade.objects.count() == 1
    bus.publish(evts[-1])  # its fill candle again (redelivered), then the one after it
    bus.publish(series.next_event(evts))
    assert Order.objects.get().status == "FILLED" and Portfolio.load().cash == cash and Trade.objects.count() == 1


def test_reconcile_leaves_paper_orders_to_their_next_candle_which_fills_each_once():
    evts = series.events()[:-1]
    series.publish_all(evts)
    for client_order_id in ("cdbstale", "cdbfresh"):
        Order.objects.create(
            client_order_id=client_order_id,
            symbol="TEST_USDT",
            side="BUY",
            quantity=D("1"),
            requested_price=D("97.6"),
            event_time=CROSS_TS - series.STEP_MS,
        )
    Order.objects.filter(client_order_id="cdbstale").update(created_at=timezone.now() - timedelta(minutes=5))
    out = StringIO()
    call_command("reconcile_orders", "--older-than", "0", stdout=out)
    assert "reconciled 0 orders" in out.getvalue()
    assert set(Order.objects.values_list("status", flat=True)) == {"PENDING"} and not Trade.objects.exists()
    fill_candle = _no_cross_candle(evts)
    bus.publish(fill_candle)
    bus.publish(fill_candle)  # redelivered
    call_command("reconcile_orders", "--older-than", "0", stdout=StringIO())
    bus.publish(series.next_event([fill_candle], open_=97.5, close=97.4))
    assert set(Order.objects.values_list("status", "price")) == {("FILLED", D("97.6488"))}  # 97.6 × 1.0005
    assert Trade.objects.count() == 2 and Position.objects.get().quantity == 2


def test_metrics_count_trades_and_failures(settings):
    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = sample("trades_total", side="BUY"), sample("order_latency_seconds_count")
    evts = series.filled_events()
    series.publish_all(evts[:-1])
    assert sample("trades_total", side="BUY") == before[0]  # decided, not filled yet
    bus.publish(evts[-1])
    assert sample("trades_total", side="BUY") == before[0] + 1
    assert sample("order_latency_seconds_count") == before[1] + 1
    failed = sample("trades_failed_total", status="FAILED")
    settings.PAPER_FAILURE_RATE = "1"
    _sell_signal(ts=NEXT_TS)
    bus.publish(series.next_event(evts))
    assert Order.objects.get(side="SELL").status == "FAILED"
    assert sample("trades_failed_total", status="FAILED") == failed + 1


def test_a_pending_sell_keeps_its_value_in_the_equity(settings):
    # Bought 9.09090909 TEST_USDT at 110.2551 (cost ≈ 1,003.32 with fees). An approved exit for all of it that has
    # not met its price yet (PENDING) takes the units out of the account's positions, so nothing is sold twice;
    # its proceeds, 9.09090909 × 110.4 × 0.9995 × 0.999 ≈ 1,002.13, stay in the equity. Counted as nothing,
    # equity would fall to the cash ≈ 8,996.68 — a 10 % "drawdown" that halts trading at the next candle.
    from django.db import transaction

    from marketdata.ingest import market_data_event
    from risk.account_view import load_account
    from risk.models import TradingState

    series.publish_all(series.filled_events())
    entry = Order.objects.get()
    assert entry.status == "FILLED"
    watched_ts = NEXT_TS + series.STEP_MS
    # Decided on the candle the watch below looks at, at its close: that candle does not fill it (its next one
    # would), so the watch judges the drawdown with the exit still PENDING.
    Order.objects.create(
        client_order_id="cdbpendingexit",
        symbol="TEST_USDT",
        side="SELL",
        quantity=entry.filled_quantity,
        requested_price=D("110.4"),
        event_time=watched_ts + series.STEP_MS,
        purpose=Order.Purpose.EXIT,
    )
    with transaction.atomic():
        account = load_account("ACTIVE", NEXT_TS, ("TEST_USDT",))
    proceeds = entry.filled_quantity * D("110.4") * D("0.9995") * D("0.999")
    assert account.positions == {} and account.cash == Portfolio.load().cash
    assert account.receivable == proceeds and account.equity == Portfolio.load().cash + proceeds
    assert account.daily_drawdown < D("0.001")
    price = 110.4
    bus.publish(market_data_event("TEST_USDT", "1m", watched_ts, price, price, price, price, 100))
    assert Order.objects.get(client_order_id="cdbpendingexit").status == "PENDING"
    assert TradingState.load().state == "ACTIVE"
