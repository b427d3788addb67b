"""Malformed events are refused with a stored reason, and the next good event is still processed."""

import pytest

from execution.models import Order
from ground import bus
from ground.models import RejectedEvent
from tests.support import series
from tests.support.processes import wait_until
from trading.tasks import on_market_data

GOOD = series.events()[0]
MALFORMED = {
    "wrong type": {**GOOD, "price": "abc"},
    "missing field": {k: v for k, v in GOOD.items() if k != "volume"},
    "negative price": {**GOOD, "price": -5.0},
    "NaN price": {**GOOD, "price": float("nan")},
    "unknown type": {**GOOD, "type": "rumour"},
    "not json": "this is {not json",
    "wrong event for the consumer": {"type": "health", "service": "x", "status": "ok", "timestamp": 1},
}


@pytest.mark.django_db(transaction=True)
def test_publish_refuses_and_stores_invalid_events():
    with pytest.raises(bus.InvalidEvent) as error:
        bus.publish({**GOOD, "price": -1})
    rejected = RejectedEvent.objects.get()
    assert rejected.stage == "publish" and rejected.topic == "market_data"
    assert "price" in rejected.reason and str(error.value) == rejected.reason
    assert '"price": -1' in rejected.payload


@pytest.mark.django_db(transaction=True)
def test_consumer_stores_each_malformed_payload_and_goes_on(sma_cross):
    for payload in MALFORMED.values():
        assert on_market_data(payload) is None  # no exception reaches the worker
    reasons = list(RejectedEvent.objects.order_by("id").values_list("stage", "consumer", "reason"))
    assert len(reasons) == len(MALFORMED)
    assert all(stage == "consume" and consumer == "trading.tasks.on_market_data" for stage, consumer, _ in reasons)
    assert "price" in reasons[0][2] and "volume" in reasons[1][2] and "price" in reasons[2][2]
    assert "price: nan is not a finite number" in reasons[3][2]
    assert "type" in reasons[4][2] and "not JSON" in reasons[5][2] and "expected a market_data" in reasons[6][2]

    series.publish_all(series.filled_events())  # the crossing's BUY fills at the next candle's open
    assert Order.objects.filter(status=Order.Status.FILLED).count() == 1


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_real_workers_survive_malformed_events(celery_workers):
    for payload in MALFORMED.values():
        on_market_data.delay(payload)
    wait_until(lambda: RejectedEvent.objects.count() == len(MALFORMED), message="all malformed events stored")

    evts = series.events()
    series.publish_all(evts)
    wait_until(lambda: Order.objects.exists(), message="the good events' order")
    bus.publish(series.next_event(evts))  # the candle it fills at
    wait_until(lambda: Order.objects.filter(status=Order.Status.FILLED).exists(), message="the good event's fill")
    assert all(worker.popen.poll() is None for worker in celery_workers)
