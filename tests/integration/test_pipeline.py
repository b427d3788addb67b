"""The skeleton path in-process: market_data → signal → risk decision → (next candle) paper fill → order_result,
stored."""

from decimal import Decimal

import pytest

from execution.models import Order, Portfolio, Position, Trade
from ground import bus
from marketdata.models import Candle
from risk import state as trading_state
from risk.models import RiskEvent, RiskParameters
from tests.support import series
from trading.models import Signal

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _sma_cross(sma_cross):
    """Pin the strategy the crafted series is worked out for, with no paper failures."""


def test_a_crossing_candle_becomes_a_filled_order():
    series.publish_all(series.events())
    order = Order.objects.get()
    assert order.status == Order.Status.PENDING  # it waits for the first price after its decision
    next_candle = series.events(prices=[110.2])[0]
    next_candle["timestamp"] = series.BASE_TS + (series.CROSS_INDEX + 1) * series.STEP_MS
    bus.publish(next_candle)

    assert Candle.objects.filter(symbol="TEST_USDT").count() == 27
    signal = Signal.objects.get()
    assert (signal.side, signal.timestamp) == ("BUY", series.BASE_TS + series.CROSS_INDEX * series.STEP_MS)
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED and order.signal_id == signal.signal_id
    # Sized at POSITION_SIZE_PCT (0.10) of the 10,000 equity at the last close 110: 1000 / 110, rounded down.
    assert order.quantity == Decimal("9.09090909")
    # Paper fill at the next candle's open 110.2: × (1 + 0.0005) slippage, fee 0.1 % of the notional.
    assert order.price == Decimal("110.2") * Decimal("1.0005")
    assert order.fees == (order.price * Decimal("9.09090909") * Decimal("0.001")).quantize(Decimal("1e-12"))
    portfolio = Portfolio.load()
    assert portfolio.cash == Decimal("10000") - order.price * order.quantity - order.fees
    assert Position.objects.get(symbol="TEST_USDT").quantity == order.quantity
    assert Trade.objects.get().status == Trade.Status.OPEN
    approve = RiskEvent.objects.get(client_order_id=order.client_order_id)
    assert approve.decision == RiskEvent.Decision.APPROVE


def test_same_market_data_twice_gives_one_order():
    events = series.events()
    series.publish_all(events)
    bus.publish(events[-1])  # redelivered crossing candle
    series.publish_all(events)  # the whole feed again

    assert Signal.objects.count() == 1
    assert Order.objects.count() == 1
    assert Candle.objects.count() == 26


def test_nothing_passes_while_halted():
    trading_state.halt("maintenance", actor="test")
    series.publish_all(series.events())

    assert Signal.objects.count() == 1
    assert Order.objects.count() == 0
    reject = RiskEvent.objects.get(decision=RiskEvent.Decision.REJECT)
    assert reject.layer == "state" and "HALTED" in reject.reason


def test_position_cap_trims_the_entry():
    RiskParameters.load()
    RiskParameters.objects.update(max_position_pct=Decimal("0.05"))
    series.publish_all(series.events())

    order = Order.objects.get()
    # Proposed 1000 / 110 = 9.09090909; the cap allows 0.05 × 10,000 / 110 = 4.54545454 (rounded down).
    assert order.quantity == Decimal("4.54545454")
    trim = RiskEvent.objects.get(client_order_id=order.client_order_id)
    assert trim.decision == RiskEvent.Decision.TRIM and trim.layer == "position"
    assert trim.requested_quantity == Decimal("9.09090909")


def test_a_halt_between_decision_and_execution_blocks_the_fill():
    """The fill step re-checks the state under the lock: an order approved and stored PENDING before a halt never
    fills at the next candle."""
    series.publish_all(series.events())
    order = Order.objects.get(status=Order.Status.PENDING)
    trading_state.halt("operator", actor="test")
    next_candle = series.events(prices=[110.0])[0]
    next_candle["timestamp"] = series.BASE_TS + (series.CROSS_INDEX + 1) * series.STEP_MS
    bus.publish(next_candle)

    order.refresh_from_db()
    assert order.status == Order.Status.REJECTED and "HALTED" in order.reason
    assert Position.objects.filter(quantity__gt=0).count() == 0
