"""``bus.wait_until_idle`` (what a lockstep replay waits on between candles) with the real Redis broker and no
worker: a message a worker has just taken off the queue, not yet filed as unacknowledged, is still in flight."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

from cdb_project.celery import app
from ground import bus
from tests.support import series
from tests.support.services import flush_broker
from trading.models import Signal
from trading.tasks import on_market_data

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker(sma_cross):
    """Tasks go to Redis (nobody takes them but the test)."""
    flush_broker()
    app.conf.task_always_eager = False
    yield redis.Redis.from_url(settings.REDIS_URL)
    app.conf.task_always_eager = True
    flush_broker()


def test_a_task_taken_off_the_queue_but_not_yet_unacked_keeps_the_pipeline_busy(broker):
    events = series.events()
    for event in events:
        bus.publish(event)
    queue = app.conf.task_default_queue
    assert broker.llen(queue) == len(events) and int(broker.get(bus.IN_FLIGHT_KEY)) == len(events)
    while broker.rpop(queue):  # what a worker's BRPOP does, the instant before it files the message as unacked
        pass
    assert broker.llen(queue) == 0 and broker.hlen("unacked") == 0

    with pytest.raises(TimeoutError):
        bus.wait_until_idle(timeout=0.3, poll=0.01)

    for event in events:  # the worker runs them: each counts itself down
        on_market_data(event)
    assert Signal.objects.count() == 1
    bus.wait_until_idle(timeout=5, poll=0.01)
    assert int(broker.get(bus.IN_FLIGHT_KEY)) == 0


def test_tasks_sent_around_the_bus_do_not_leave_the_count_below_zero(broker):
    on_market_data({"type": "market_data"})  # a malformed payload from elsewhere: refused, counted down
    assert int(broker.get(bus.IN_FLIGHT_KEY)) == -1
    bus.wait_until_idle(timeout=5, poll=0.01)
    assert int(broker.get(bus.IN_FLIGHT_KEY)) == 0


def test_a_notification_waiting_on_its_own_queue_does_not_hold_the_pipeline(broker):
    # A notify worker holds a delayed message (a digest's flush, a retry's backoff) unacknowledged for a minute:
    # a lockstep replay must not wait for it. One of the pipeline's own still does hold it.
    import json

    queue = app.conf.task_default_queue
    broker.hset("unacked", "tag-notify", json.dumps([{"body": "x"}, "", "notify"]))
    bus.wait_until_idle(timeout=2, poll=0.01)
    broker.hset("unacked", "tag-pipeline", json.dumps([{"body": "x"}, "", queue]))
    with pytest.raises(TimeoutError):
        bus.wait_until_idle(timeout=0.3, poll=0.01)
