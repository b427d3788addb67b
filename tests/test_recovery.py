"""cdb_project.recovery: work a broker outage lost (a NEW signal, a PENDING order) is found in the store and
finished, exactly once."""

from __future__ import annotations

import contextlib

import pytest
from django.test.utils import override_settings

from cdb_project import bus
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


def test_a_new_signal_whose_task_was_lost_is_decided_once(sma_cross):
    from cdb_project.recovery import redrive
    from execution.models import Order
    from risk.models import RiskEvent
    from trading.models import Signal

    with consumers(market_data=["trading.tasks.on_market_data"]):
        series.publish_all(series.events())  # candles stored, the signal stored NEW, its on_signal "lost"
    signal = Signal.objects.get()
    assert signal.status == Signal.Status.NEW and not Order.objects.exists()

    assert redrive(older_than_seconds=0) == {"orders": 0, "signals": 1}
    signal.refresh_from_db()
    assert signal.status == Signal.Status.DECIDED
    assert RiskEvent.objects.filter(signal_id=signal.signal_id).count() == 1
    assert Order.objects.get().status == Order.Status.FILLED  # and on_order ran

    assert redrive(older_than_seconds=0) == {"orders": 0, "signals": 0}  # nothing left, nothing twice
    assert Order.objects.count() == 1 and RiskEvent.objects.filter(signal_id=signal.signal_id).count() == 1


def test_a_pending_order_whose_task_was_lost_is_executed_once(sma_cross):
    from cdb_project.recovery import redrive
    from execution.models import Order

    with consumers(market_data=["trading.tasks.on_market_data"], signals=["risk.tasks.on_signal"]):
        series.publish_all(series.events())  # decided, the order stored PENDING, its on_order "lost"
    order = Order.objects.get()
    assert order.status == Order.Status.PENDING

    assert redrive(older_than_seconds=0) == {"orders": 1, "signals": 0}
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert redrive(older_than_seconds=0) == {"orders": 0, "signals": 0}


def test_the_beat_job_leaves_young_signals_alone(sma_cross, settings):
    from cdb_project.recovery import redrive_stale_signals
    from trading.models import Signal

    with consumers(market_data=["trading.tasks.on_market_data"]):
        series.publish_all(series.events())
    settings.SIGNAL_REDRIVE_AFTER_SEC = 3600
    assert redrive_stale_signals() == 0
    assert Signal.objects.get().status == Signal.Status.NEW
    assert settings.CELERY_BEAT_SCHEDULE["redrive-new-signals"]["task"] == "cdb_project.redrive_signals"
