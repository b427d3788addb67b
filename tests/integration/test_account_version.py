"""The account's version (``risk.models.AccountVersion``): database triggers bump it with every write that changes
what the account view reads, whoever makes it (the services, the admin, a bulk UPDATE), and leave it alone on
writes that do not; the market watch reads the account again only when it moved."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from django.db.models import F
from django.utils import timezone

from execution.models import Order, Portfolio, Position, Trade
from ground import bus
from marketdata.models import Candle
from risk.alerts import raise_alert
from risk.models import AccountVersion, RiskEvent, RiskParameters, TradingState
from risk.state import halt
from tests.support import series
from trading.models import Signal


def version() -> int | None:
    return AccountVersion.objects.filter(pk=1).values_list("version", flat=True).first()


def _order(client_order_id: str, **fields) -> Order:
    defaults = {"symbol": "BTC_USDT", "side": "BUY", "quantity": D(1), "requested_price": D(100), "event_time": 1}
    return Order.objects.create(client_order_id=client_order_id, **{**defaults, **fields})


def _trade() -> Trade:
    return Trade.objects.create(
        trade_id="t1",
        order=Order.objects.get(client_order_id="o1"),
        symbol="BTC_USDT",
        quantity=D(1),
        entry_price=D(100),
        entry_time=timezone.now(),
        stop_loss=D(98),
    )


CHANGES = {
    "a deposit": lambda: Portfolio.objects.filter(pk=1).update(cash=F("cash") + 500),
    "an order placed": lambda: _order("o1"),
    "its fill": lambda: Order.objects.filter(client_order_id="o1").update(
        status=Order.Status.FILLED, filled_quantity=D(1), price=D(100), fees=D("0.1")
    ),
    "the fill's position": lambda: Position.objects.create(
        symbol="BTC_USDT", quantity=D(1), cost_basis=D(100), avg_entry_price=D(100)
    ),
    "the fill's cost and fee": lambda: Portfolio.objects.filter(pk=1).update(
        cash=F("cash") - D("100.1"), fees_paid=F("fees_paid") + D("0.1")
    ),
    "its trade (an open lot)": _trade,
    "the lot's stop": lambda: Trade.objects.filter(trade_id="t1").update(stop_loss=D(99)),
    "a position's quantity": lambda: Position.objects.filter(symbol="BTC_USDT").update(quantity=D("0.5")),
    "a waiting order's quantity": lambda: _order("o2", side="SELL", quantity=D("0.5")),
    "an order cancelled": lambda: Order.objects.filter(client_order_id="o2").update(status=Order.Status.REJECTED),
    "a halt": lambda: halt("checking", actor="tester"),
    "a risk parameter (a bulk UPDATE, as a script would)": lambda: RiskParameters.objects.update(
        max_position_pct=D("0.2")
    ),
    "the day's start rolled": lambda: Portfolio.objects.filter(pk=1).update(
        day=datetime(2024, 11, 1, tzinfo=UTC).date(), day_start_equity=D(10400)
    ),
    "a position closed and deleted": lambda: Position.objects.filter(symbol="BTC_USDT").delete(),
}

NO_CHANGE = {
    "a candle": lambda: Candle.objects.create(
        symbol="BTC_USDT", interval="1m", timestamp=0, open=1, high=1, low=1, close=1, volume=1
    ),
    "a signal": lambda: Signal.objects.create(
        signal_id="s1",
        symbol="BTC_USDT",
        interval="1m",
        side="BUY",
        confidence=D("0.5"),
        reason="r",
        strategy="x",
        price=D(1),
        timestamp=0,
    ),
    "a risk event": lambda: RiskEvent.objects.create(decision="REJECT", layer="position", reason="r", timestamp=0),
    "an alert": lambda: raise_alert("INFO", "TEST", "nothing to do with the account", timestamp=0),
    "a live order marked sent": lambda: Order.objects.filter(client_order_id="o1").update(sent_at=timezone.now()),
    "an order's reason": lambda: Order.objects.filter(client_order_id="o1").update(reason="left for reconciliation"),
    "a closed trade's P&L figures": lambda: Trade.objects.filter(trade_id="t1").update(profit_loss=D(1)),
}


@pytest.mark.django_db
def test_every_write_that_changes_the_account_bumps_its_version_and_others_leave_it():
    Portfolio.load(), TradingState.load(), RiskParameters.load()
    for what, write in CHANGES.items():
        before = version()
        write()
        assert version() > before, what
    for what, write in NO_CHANGE.items():
        before = version()
        write()
        assert version() == before, what


@pytest.mark.django_db(transaction=True)
def test_a_decision_and_its_fill_through_the_pipeline_each_bump_it(sma_cross):
    """The real writers: the risk shell's PENDING order, then the paper fill at the next candle."""
    events = series.events()
    series.publish_all(events)
    decided = version()
    assert Order.objects.get().status == Order.Status.PENDING
    bus.publish(series.next_event(events))
    assert Order.objects.get().status == Order.Status.FILLED
    assert version() > decided
    filled = version()
    bus.publish(series.next_event([*events, series.next_event(events)]))  # a candle with nothing to do
    assert version() == filled


@pytest.mark.django_db(transaction=True)
def test_a_row_made_again_starts_past_every_value_the_old_one_had():
    """A flushed database (a test run) must not hand a running market watch a version it has already seen."""
    Portfolio.load()
    old = version()
    AccountVersion.objects.all().delete()
    Portfolio.objects.filter(pk=1).update(cash=F("cash") + 1)  # the trigger makes the row again
    assert version() > old
