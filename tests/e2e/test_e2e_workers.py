"""End to end on real processes: Celery workers on Redis + PostgreSQL, a Redis subscriber, a daphne websocket."""

import json
import random
from decimal import Decimal

import pytest
import redis
from django.conf import settings

from execution.models import Order
from ground import bus
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
        # A time of its own: signal ids come from the candles, and Redis channels are shared by every database
        # index, so a suite running beside this one must not publish the same ids.
        evts = series.events(base_ts=series.BASE_TS + series.STEP_MS * random.randrange(1, 500_000))
        series.publish_all(evts)
        wait_until(lambda: Order.objects.exists(), message="the crossing's order")
        bus.publish(series.next_event(evts))  # the candle whose open it fills at

        order = wait_until(lambda: Order.objects.filter(status=Order.Status.FILLED).first(), message="a filled order")
        signal = Signal.objects.get()
        assert order.signal_id == signal.signal_id and order.side == "BUY"
        assert order.price == Decimal("110.2551")  # the next candle's open 110.2 × 1.0005

        def result_on(messages):
            return [m for m in messages if m.get("client_order_id") == order.client_order_id]

        on_redis = wait_until(
            lambda: result_on([e for channel, e in received if channel == "order_results"]), message="Redis message"
        )
        assert on_redis[0]["status"] == "FILLED" and on_redis[0]["price"] == "110.2551"  # exact, as stored
        # Redis channels are shared by every database index: only this signal's messages are looked at.
        ids = (signal.signal_id, order.client_order_id)
        ours = [channel for channel, e in received if e.get("signal_id") in ids or e.get("client_order_id") in ids]
        assert ours == ["signals", "orders", "order_results"]

        pushed = wait_until(
            lambda: result_on(browser.pushed("order_results")),
            message="the websocket push",
        )
        assert pushed[0]["filled_quantity"] == format(order.filled_quantity.normalize(), "f")  # exact, a string
    finally:
        listener.stop()
        browser.close()


def _database_sessions() -> int:
    """Sessions ever opened on the test database (PostgreSQL counts them in pg_stat_database)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_workers_keep_their_database_sessions_between_tasks(celery_workers):
    """Celery's Django fix-up would open a PostgreSQL session for every task; workers keep theirs (CONN_MAX_AGE)."""
    series.publish_all(series.filled_events())  # 27 candles, one task each, and the order they lead to
    bus.wait_until_idle(timeout=60, poll=0.05)
    before = _database_sessions()
    more = series.events(symbol="MORE_USDT")
    series.publish_all(more)
    bus.wait_until_idle(timeout=60, poll=0.05)
    bus.publish(series.next_event(more))  # after the crossing's decision: the candle its order fills at
    bus.wait_until_idle(timeout=60, poll=0.05)
    assert Order.objects.filter(symbol="MORE_USDT", status=Order.Status.FILLED).exists()
    assert _database_sessions() - before <= 2, "at most a reconnect per worker, not a session per task"
