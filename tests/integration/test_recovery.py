"""cdb_project.recovery: work a broker outage lost (a NEW signal, a PENDING order) is found in the store and
finished, exactly once."""
# A signal is stored NEW only by versions before signals were stored and decided in one transaction: the tests below
# make that state as such a version leaves it. A paper order is PENDING until its symbol's next candle: recovery
# leaves it to that candle (it never fills at a price from before its decision).

from __future__ import annotations

import contextlib

import pytest
from django.test.utils import override_settings

from ground import bus
from tests.support import series

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def consumers(**wiring):
    """Only these consumers run (eagerly): the tasks of every other topic are "lost"."""
    with override_settings(EVENT_CONSUMERS=wiring):
        bus._consumers.cache_clear()
        try:
            yield
        finally:
            bus._consumers.cache_clear()
    bus._consumers.cache_clear()


def _a_signal_left_new():
    """The crafted series stored with no consumer, then its signal stored NEW — what a version before signals were
    stored and decided in one transaction left behind when its decision task was lost."""
    from django.conf import settings

    from trading.models import Signal
    from trading.signal_service import evaluate, signal_id_for

    events = series.events()
    with consumers():
        series.publish_all(events)  # candles stored, no task ran
    strategy, emitted, _path = evaluate(settings.STRATEGY, "TEST_USDT", "1m", events[-1]["timestamp"])
    return Signal.objects.create(
        signal_id=signal_id_for("TEST_USDT", "1m", strategy.name, events[-1]["timestamp"]),
        symbol="TEST_USDT",
        interval="1m",
        side=emitted.side,
        confidence=str(emitted.confidence),
        reason=emitted.reason,
        strategy=strategy.name,
        price=str(emitted.price),
        timestamp=events[-1]["timestamp"],
    )


def test_a_new_signal_whose_task_was_lost_is_decided_once(sma_cross):
    from cdb_project.recovery import redrive
    from execution.models import Order
    from risk.models import RiskEvent
    from trading.models import Signal

    signal = _a_signal_left_new()
    assert signal.status == Signal.Status.NEW and not Order.objects.exists()

    assert redrive(older_than_seconds=0) == {"orders": 0, "signals": 1}
    signal.refresh_from_db()
    assert signal.status == Signal.Status.DECIDED
    assert RiskEvent.objects.filter(signal_id=signal.signal_id).count() == 1
    assert Order.objects.get().status == Order.Status.PENDING  # approved: it waits for the next candle's price

    assert redrive(older_than_seconds=0) == {"orders": 0, "signals": 0}  # nothing left, nothing twice
    assert Order.objects.count() == 1 and RiskEvent.objects.filter(signal_id=signal.signal_id).count() == 1


def test_a_paper_order_is_left_to_its_next_candle_and_filled_once(sma_cross):
    from cdb_project.recovery import redrive
    from execution.models import Order

    events = series.events()
    with consumers(market_data=["trading.tasks.on_market_data"]):
        series.publish_all(events)  # decided, the order stored PENDING, its orders event lost
    order = Order.objects.get()
    assert order.status == Order.Status.PENDING

    assert redrive(older_than_seconds=0) == {"orders": 0, "signals": 0}  # no price after its decision yet
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    next_candle = series.events(prices=[110.0])[0]
    next_candle["timestamp"] = events[-1]["timestamp"] + series.STEP_MS
    with consumers(market_data=["trading.tasks.on_market_data"]):
        bus.publish(next_candle)
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert redrive(older_than_seconds=0) == {"orders": 0, "signals": 0}


def test_the_beat_job_leaves_young_signals_alone(sma_cross, settings):
    from cdb_project.recovery import redrive_stale_signals
    from trading.models import Signal

    _a_signal_left_new()
    settings.SIGNAL_REDRIVE_AFTER_SEC = 3600
    assert redrive_stale_signals() == 0
    assert Signal.objects.get().status == Signal.Status.NEW
    assert settings.CELERY_BEAT_SCHEDULE["redrive-new-signals"]["task"] == "cdb_project.redrive_signals"
