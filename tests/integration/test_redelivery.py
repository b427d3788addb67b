"""Redelivered tasks (acks_late) and work a dying worker leaves behind.

A signal is stored and decided in one transaction, and a paper order is filled by its symbol's next candle in
another: a worker that dies inside either leaves nothing of it, and the redelivered candle does it, once. An order
committed PENDING before it is sent (live trading) whose execution task was lost is re-driven by the redelivered
candle or signal. Dying is simulated by dropping the one enqueue (the process died right after its commit) or by
failing inside the transaction."""

import pytest

from execution.models import Order, Trade
from ground import bus
from marketdata.ingest import persist_market_data
from risk import order_service
from risk.models import RiskEvent
from tests.support import series
from trading.models import Signal
from trading.tasks import on_market_data, on_signal

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _strategy(sma_cross):
    """The crafted series signals a BUY at its last candle (index 25)."""


def _losing(monkeypatch, topic: str) -> tuple[list[dict], list[dict]]:
    """Drop the first enqueue on ``topic`` (the process died right after its commit): (what was dropped, the orders
    enqueued to a consumer again after it)."""
    real, lost, sent = bus._dispatch, [], []
    real_enqueue = bus._enqueue

    def dispatch(event_topic, event):
        if event_topic == topic and not lost:
            lost.append(event)
            return
        real(event_topic, event)

    def enqueue(task, payload):
        if lost and isinstance(payload, dict) and payload.get("type") == "order":
            sent.append(payload)
        real_enqueue(task, payload)

    monkeypatch.setattr(bus, "_dispatch", dispatch)
    monkeypatch.setattr(bus, "_enqueue", enqueue)
    return lost, sent


def _next_candle(events: list[dict], price: float = 110.0) -> dict:
    candle = series.events(prices=[price])[0]
    candle["timestamp"] = events[-1]["timestamp"] + series.STEP_MS
    return candle


def test_dying_inside_the_signal_transaction_leaves_nothing_and_the_redelivered_candle_does_it_once(monkeypatch):
    from risk import decision_service

    events = series.events()
    real_order_event = decision_service.order_event

    def dying(*args):  # after the risk event and the order are written, before anything is published
        raise RuntimeError("the worker dies in the middle of the decision")

    monkeypatch.setattr(decision_service, "order_event", dying)
    series.publish_all(events[:-1])
    persist_market_data(events[-1])  # stored by the feed; its task is the one that dies
    with pytest.raises(RuntimeError):
        on_market_data(events[-1])
    # Signal, risk event and order were one transaction: none of them is stored.
    assert not Signal.objects.exists() and not RiskEvent.objects.exists() and not Order.objects.exists()

    monkeypatch.setattr(decision_service, "order_event", real_order_event)
    on_market_data(events[-1])  # acks_late redelivery of the candle's task
    assert Signal.objects.get().status == Signal.Status.DECIDED
    assert Order.objects.get().status == Order.Status.PENDING and RiskEvent.objects.count() == 1
    on_market_data(events[-1])  # and once more: nothing changes
    assert (Signal.objects.count(), Order.objects.count(), RiskEvent.objects.count()) == (1, 1, 1)


def test_dying_inside_the_fill_leaves_the_order_pending_and_the_redelivered_candle_fills_it_once(monkeypatch):
    events = series.events()
    series.publish_all(events)
    real_fill = order_service.paper_exchange

    def dying():
        raise RuntimeError("the worker dies in the middle of the fill")

    monkeypatch.setattr(order_service, "paper_exchange", dying)
    fill_candle = _next_candle(events)
    persist_market_data(fill_candle)
    with pytest.raises(RuntimeError):
        on_market_data(fill_candle)
    assert Order.objects.get().status == Order.Status.PENDING and not Trade.objects.exists()

    monkeypatch.setattr(order_service, "paper_exchange", real_fill)
    on_market_data(fill_candle)  # acks_late redelivery
    assert Order.objects.get().status == Order.Status.FILLED and Trade.objects.count() == 1
    on_market_data(fill_candle)  # and once more: nothing changes
    assert (Order.objects.count(), Trade.objects.count()) == (1, 1)


def test_a_redelivered_signal_enqueues_its_still_pending_order(monkeypatch, orders_left_pending):
    lost, sent = _losing(monkeypatch, "orders")
    series.publish_all(series.events())
    order = Order.objects.get()
    assert lost and order.status == Order.Status.PENDING

    signal = Signal.objects.get()
    on_signal(
        {
            "type": "signal",
            "signal_id": signal.signal_id,
            "symbol": signal.symbol,
            "side": signal.side,
            "confidence": float(signal.confidence),
            "reason": signal.reason,
            "timestamp": signal.timestamp,
        }
    )

    assert [event["client_order_id"] for event in sent] == [order.client_order_id]  # enqueued again, once
    assert Order.objects.count() == 1
    assert RiskEvent.objects.filter(signal_id=signal.signal_id).count() == 1


def test_a_redelivered_candle_re_drives_the_pending_order_of_its_decided_signal(monkeypatch, orders_left_pending):
    """Dying after the decision's commit leaves the order PENDING with no task anywhere but the candle's own,
    which is redelivered."""
    events = series.events()
    lost, sent = _losing(monkeypatch, "orders")
    series.publish_all(events)
    order = Order.objects.get()
    assert lost and order.status == Order.Status.PENDING
    assert Signal.objects.get().status == Signal.Status.DECIDED

    on_market_data(events[-1])

    assert [event["client_order_id"] for event in sent] == [order.client_order_id]  # enqueued again, once
    assert Order.objects.count() == 1 and RiskEvent.objects.count() == 1
