"""Redelivered tasks (acks_late) and work a dying worker leaves behind.

A paper signal is stored, decided and filled in one transaction: a worker that dies inside it leaves nothing, and
the redelivered candle does all of it, once. An order committed PENDING before it is sent (live trading) whose
execution task was lost is re-driven by the redelivered candle or signal. Dying is simulated by dropping the one
enqueue (the process died right after its commit) or by failing inside the transaction."""

import pytest

from cdb_project import bus
from execution import service
from execution.models import Order, Trade
from marketdata.ingest import persist_market_data
from risk.models import RiskEvent
from risk.tasks import on_signal
from tests.support import series
from trading.models import Signal
from trading.tasks import on_market_data

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _strategy(sma_cross):
    """The crafted series signals a BUY at its last candle (index 25)."""


def _losing(monkeypatch, topic: str) -> list[dict]:
    """Drop the first enqueue on ``topic`` (the process died right after its commit); return what was dropped."""
    real, lost = bus._dispatch, []

    def dispatch(event_topic, event):
        if event_topic == topic and not lost:
            lost.append(event)
            return
        real(event_topic, event)

    monkeypatch.setattr(bus, "_dispatch", dispatch)
    return lost


def test_dying_inside_the_signal_transaction_leaves_nothing_and_the_redelivered_candle_does_it_once(monkeypatch):
    events = series.events()
    real_fill = service.paper_exchange

    def dying():
        raise RuntimeError("the worker dies in the middle of the fill")

    monkeypatch.setattr(service, "paper_exchange", dying)
    series.publish_all(events[:-1])
    persist_market_data(events[-1])  # stored by the feed; its task is the one that dies
    with pytest.raises(RuntimeError):
        on_market_data(events[-1])
    # Signal, risk event and order were one transaction: none of them is stored.
    assert not Signal.objects.exists() and not RiskEvent.objects.exists() and not Order.objects.exists()

    monkeypatch.setattr(service, "paper_exchange", real_fill)
    on_market_data(events[-1])  # acks_late redelivery of the candle's task
    assert Signal.objects.get().status == Signal.Status.DECIDED
    assert Order.objects.get().status == Order.Status.FILLED and Trade.objects.count() == 1
    assert RiskEvent.objects.count() == 1

    on_market_data(events[-1])  # and once more: nothing changes
    assert (Signal.objects.count(), Order.objects.count(), RiskEvent.objects.count(), Trade.objects.count()) == (
        1,
        1,
        1,
        1,
    )


def test_a_redelivered_signal_enqueues_its_still_pending_order(monkeypatch, orders_left_pending):
    lost = _losing(monkeypatch, "orders")
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

    order.refresh_from_db()
    assert order.status == Order.Status.FILLED and Order.objects.count() == 1
    assert RiskEvent.objects.filter(signal_id=signal.signal_id).count() == 1


def test_a_redelivered_candle_re_drives_the_pending_order_of_its_decided_signal(monkeypatch, orders_left_pending):
    """Dying after the decision's commit leaves the order PENDING with no task anywhere but the candle's own,
    which is redelivered."""
    events = series.events()
    lost = _losing(monkeypatch, "orders")
    series.publish_all(events)
    order = Order.objects.get()
    assert lost and order.status == Order.Status.PENDING
    assert Signal.objects.get().status == Signal.Status.DECIDED

    on_market_data(events[-1])

    order.refresh_from_db()
    assert order.status == Order.Status.FILLED and Order.objects.count() == 1
    assert RiskEvent.objects.count() == 1
