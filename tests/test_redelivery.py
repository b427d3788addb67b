"""A worker that dies after committing its work but before enqueueing the next step: the redelivered task
(acks_late) must enqueue that step again, or the work would wait PENDING/NEW until a periodic re-drive while the
pipeline looks idle. Simulated by dropping the one enqueue, then delivering the same event again."""

import pytest

from cdb_project import bus
from execution.models import Order
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


def test_a_redelivered_candle_enqueues_the_decision_of_its_undecided_signal(monkeypatch):
    events = series.events()
    lost = _losing(monkeypatch, "signals")
    series.publish_all(events)
    signal = Signal.objects.get()
    assert lost and signal.status == Signal.Status.NEW and not RiskEvent.objects.exists()

    on_market_data(events[-1])  # acks_late redelivery of the candle's task

    signal.refresh_from_db()
    assert signal.status == Signal.Status.DECIDED and Signal.objects.count() == 1
    assert Order.objects.get().status == Order.Status.FILLED


def test_a_redelivered_signal_enqueues_its_still_pending_order(monkeypatch):
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


def test_a_redelivered_candle_re_drives_the_pending_order_of_its_decided_signal(monkeypatch):
    """A worker hands signal → decision → execution on in process: dying after the decision's commit leaves the
    order PENDING with no task anywhere but the candle's own, which is redelivered."""
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
