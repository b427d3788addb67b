"""End to end on real processes: Celery workers on Redis + PostgreSQL, a Redis subscriber, a daphne websocket."""

import json

import pytest
import redis
from django.conf import settings

from execution.models import Order
from tests.support import series
from tests.support.processes import wait_until
from tests.support.ws import DashboardClient, session_cookie
from trading.models import Signal

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def _subscribe(*channels: str):
    received: list[tuple[str, dict]] = []
    client = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    client.subscribe(
        **{c: (lambda m: received.append((m["channel"].decode(), json.loads(m["data"])))) for c in channels}
    )
    thread = client.run_in_thread(sleep_time=0.01, daemon=True)
    return received, thread


def test_market_data_becomes_an_order_result_seen_on_redis_and_the_websocket(celery_workers, daphne_server):
    received, listener = _subscribe("signals", "orders", "order_results")
    from django.contrib.auth.models import User

    viewer = User.objects.create_user("viewer", password="pw")
    browser = DashboardClient(daphne_server.port, cookie=session_cookie(viewer))
    try:
        wait_until(lambda: any(m["kind"] == "snapshot" for m in browser.messages), message="the snapshot")
        series.publish_all(series.events())

        order = wait_until(lambda: Order.objects.filter(status=Order.Status.FILLED).first(), message="a filled order")
        signal = Signal.objects.get()
        assert order.signal_id == signal.signal_id and order.side == "BUY"

        def result_on(messages):
            return [m for m in messages if m.get("client_order_id") == order.client_order_id]

        on_redis = wait_until(
            lambda: result_on([e for channel, e in received if channel == "order_results"]), message="Redis message"
        )
        assert on_redis[0]["status"] == "FILLED" and on_redis[0]["price"] == float(order.price)
        assert [channel for channel, _ in received] == ["signals", "orders", "order_results"]

        pushed = wait_until(
            lambda: result_on(browser.pushed("order_results")),
            message="the websocket push",
        )
        assert pushed[0]["filled_quantity"] == float(order.filled_quantity)
    finally:
        listener.stop()
        browser.close()
