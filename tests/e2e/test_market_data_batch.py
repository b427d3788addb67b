"""Candles in batches (one task for many, see bus.publish_batch and trading.tasks.on_market_data_batch) have the
effects the same candles have one task each: the same signals, decisions, orders, stop-loss exits and trades."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings

from execution.models import Order, Portfolio, Position, Trade
from ground import bus
from ground.models import RejectedEvent
from marketdata.feeds.replay import Replay, resolve_sources
from marketdata.ingest import market_data_event, persist_market_data
from marketdata.models import Candle
from risk.models import Alert, RiskEvent, TradingState
from tests.support import series
from tests.support.drills import zigzag_csv
from trading.models import Signal
from trading.signal_service import clear_state_cache, evaluate
from trading.tasks import on_market_data_batch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _strategy(sma_cross):
    """The crafted series decides to buy TEST_USDT at candle 25; it fills at the next open, 110.2 × 1.0005 =
    110.2551; its stop (2 %) is 108.05, which the close 108 trips (the stop-loss SELL fills at the next open, 107)."""


def _events() -> list[dict]:
    """The crossing (a BUY, filled at the next candle), then a second symbol's candles in between, then a fall
    through the stop-loss (at 108) and its fill (at 107)."""
    events = series.events()
    last = events[-1]["timestamp"]
    for i, price in enumerate([110.2, 109, 108, 107, 106, 109, 111], start=1):
        ts = last + i * series.STEP_MS
        events.append(market_data_event("TEST_USDT", "1m", ts, price, price * 1.001, price * 0.999, price, 100))
        events.append(market_data_event("OTHER_USDT", "1m", ts, 50 + i, 50.1 + i, 49.9 + i, 50 + i, 10))
    return events


def _outcome() -> dict:
    return {
        "signals": list(Signal.objects.order_by("signal_id").values_list("signal_id", "side", "status")),
        "decisions": list(RiskEvent.objects.order_by("signal_id").values_list("signal_id", "decision", "layer")),
        "orders": list(
            Order.objects.order_by("client_order_id").values_list(
                "client_order_id", "purpose", "side", "status", "quantity", "price", "event_time"
            )
        ),
        "trades": list(Trade.objects.order_by("trade_id").values_list("trade_id", "status", "exit_reason")),
        "cash": Portfolio.load().cash,
        "alerts": list(Alert.objects.order_by("id").values_list("code", "message")),
    }


def _forget_everything() -> None:
    for model in (Trade, Order, RiskEvent, Signal, Position, Portfolio, Alert, TradingState, Candle):
        model.objects.all().delete()
    clear_state_cache()


def test_a_batch_has_the_effects_of_its_candles_one_by_one():
    events = _events()
    series.publish_all(events)
    one_by_one = _outcome()
    assert any(order[1] == Order.Purpose.STOP_LOSS for order in one_by_one["orders"]), "the series must exercise it"
    assert len(one_by_one["orders"]) == 2
    by_time = sorted(one_by_one["orders"], key=lambda order: order[6])
    assert [(order[2], order[3], order[5]) for order in by_time] == [  # filled at the next candles' opens
        ("BUY", "FILLED", Decimal("110.2551")),  # 110.2 × 1.0005
        ("SELL", "FILLED", Decimal("106.9465")),  # 107 × 0.9995
    ]

    _forget_everything()
    for start in range(0, len(events), 7):  # batches that split the crossing and the fall at odd places
        bus.publish_batch(events[start : start + 7])

    assert _outcome() == one_by_one
    assert Candle.objects.count() == len(events)


def test_a_malformed_event_in_a_batch_is_refused_alone():
    events = series.events()
    bus.publish_batch(events[:-1])
    fill = series.next_event(events)  # the candle after the crossing, which fills its BUY
    persist_market_data(events[-1])  # stored, not yet handled: what a worker receives
    persist_market_data(fill)
    broken = dict(events[-1], price=-1)

    on_market_data_batch([broken, events[-1], "not an event", fill])

    assert RejectedEvent.objects.filter(stage="consume", consumer="trading.tasks.on_market_data_batch").count() == 2
    order = Order.objects.get()
    assert order.status == Order.Status.FILLED, "the valid candles were still handled"
    assert order.price == Decimal("110.2551")  # the fill candle's open 110.2 × 1.0005
    on_market_data_batch({"type": "market_data"})
    assert RejectedEvent.objects.filter(reason__startswith="a batch must be a JSON array").count() == 1


@pytest.mark.workers
def test_a_replay_through_real_workers_in_batches_misses_and_repeats_nothing(celery_workers, tmp_path):
    files = [str(zigzag_csv(tmp_path / f"Z{n}_USDT-1m.csv", 150, start=1_735_689_600_000)) for n in range(3)]
    replay = Replay(resolve_sources(files, None, None), speed=None)
    assert replay.batch_size == settings.MARKET_DATA_BATCH_SIZE > 1, "workers get candles in batches"

    summary = replay.run()
    bus.wait_until_idle(timeout=300, poll=0.05)

    assert summary.published == Candle.objects.count() == 450
    expected = set()
    for symbol, ts in Candle.objects.values_list("symbol", "timestamp"):
        _, emitted, _ = evaluate(settings.STRATEGY, symbol, "1m", ts)
        if emitted is not None:
            expected.add((symbol, ts, emitted.side))
    assert expected, "the zig-zag must make the strategy speak"
    assert set(Signal.objects.values_list("symbol", "timestamp", "side")) == expected
    assert not Signal.objects.filter(status=Signal.Status.NEW).exists()
    # A paper order fills at its symbol's first candle after its decision. Workers decide a batch's signals while
    # its candles are still being watched, so an order decided near the end may have no later candle: it waits for
    # a price the data never gives (run_feed expires those at the replay's end). Any other waiting order was lost.
    last_open = 1_735_689_600_000 + 149 * 60_000
    for symbol, event_time in Order.objects.filter(status=Order.Status.PENDING).values_list("symbol", "event_time"):
        assert event_time > last_open - settings.MARKET_DATA_BATCH_SIZE * 60_000, f"{symbol} order at {event_time}"
    for signal_id in Signal.objects.values_list("signal_id", flat=True):
        assert RiskEvent.objects.filter(signal_id=signal_id).count() == 1, f"{signal_id} decided once"
    assert Order.objects.filter(status=Order.Status.FILLED).exists()


@pytest.mark.redis
def test_a_batch_publishes_every_event_and_pushes_the_last_candle_of_each_symbol():
    import asyncio
    import json
    import time

    import redis
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from ground.dashboard_push import background_pusher

    layer = get_channel_layer()
    background_pusher(layer, settings.DASHBOARD_GROUP).flush(10)  # what earlier tests pushed is out of the way
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(settings.DASHBOARD_GROUP, channel)
    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe("market_data")
    events = _events()[-12:]  # six candles of TEST_USDT and six of OTHER_USDT, interleaved
    try:
        bus.publish_batch(events)
        published, deadline = [], time.monotonic() + 10
        while len(published) < len(events) and time.monotonic() < deadline:
            message = subscriber.get_message(timeout=0.5)  # None for the subscription's own confirmation
            if message is not None:
                published.append(json.loads(message["data"]))
        assert published == events  # every event, in order

        background_pusher(layer, settings.DASHBOARD_GROUP).flush(10)
        async_to_sync(layer.send)(channel, {"type": "test.marker"})  # behind everything the flush pushed

        async def pushed_market_data():
            out = []
            while True:
                message = await asyncio.wait_for(layer.receive(channel), 10)
                if message["type"] == "test.marker":
                    return out
                pushes = message["messages"] if message["type"] == "dashboard.push_many" else [message]
                out += [push["data"] for push in pushes if push["kind"] == "market_data"]

        assert async_to_sync(pushed_market_data)() == [events[-2], events[-1]]  # the last of each symbol
    finally:
        subscriber.close()
        async_to_sync(layer.group_discard)(settings.DASHBOARD_GROUP, channel)
