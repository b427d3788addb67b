"""The live signal path gives the same signals whatever order market_data tasks run in.

Reference: the strategy object fed the stored candles in timestamp order, in this
process (what the backtest does). The live path must match it exactly — in order,
shuffled, after a late older candle, with a poisoned cache, and through real workers.
"""

from __future__ import annotations

import csv
import pickle
import random
import sys
from decimal import Decimal

import pytest
from django.conf import settings as django_settings

from ground import bus
from marketdata.ingest import market_data_event, persist_market_data
from marketdata.models import Candle
from tests.support import processes
from tests.support.paths import CANDLES
from tests.support.processes import wait_until
from trading import signal_service
from trading.models import Signal
from trading.signal_service import clear_state_cache, evaluate, history, process_market_data, state_key, state_store
from trading.strategies import strategy_from_spec

DATA = CANDLES
pytestmark = pytest.mark.shared_data
SPEC = "momentum"


def csv_events(symbol: str, name: str = "ETH_BTC-5m", count: int = 300, start: int = 0) -> list[dict]:
    with (DATA / f"{name}.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    interval = name.rsplit("-", 1)[1]
    return [market_data_event(symbol, interval, int(r[0]), *map(float, r[1:6])) for r in rows[start : start + count]]


def store(events: list[dict]) -> None:
    for event in events:
        persist_market_data(event)


def expected_signals(spec: str, symbol: str, interval: str) -> set[tuple]:
    """The in-process reference over the stored candles (the same float conversion as the live path)."""
    last = Candle.objects.filter(symbol=symbol, interval=interval).order_by("-timestamp").first()
    candles = history(symbol, interval, last.timestamp)
    strategy = strategy_from_spec(spec)
    return {(s.timestamp, s.side, f"{s.confidence:.4f}", s.reason) for s in strategy.run(candles)}


def forget_signals(symbol: str) -> None:
    """As if the symbol's candles had never been handled: a signal is stored and decided in one transaction, so
    its decision (risk event, order, trades) goes with it."""
    from execution.models import Order, Trade
    from risk.models import RiskEvent

    Trade.objects.filter(symbol=symbol).delete()
    Order.objects.filter(symbol=symbol).delete()
    RiskEvent.objects.filter(symbol=symbol).delete()
    Signal.objects.filter(symbol=symbol).delete()


def _same_state(a, b) -> bool:
    return pickle.dumps(a) == pickle.dumps(b)


def stored_signals(symbol: str) -> set[tuple]:
    return {
        (ts, side, f"{confidence:.4f}", reason)
        for ts, side, confidence, reason in Signal.objects.filter(symbol=symbol).values_list(
            "timestamp", "side", "confidence", "reason"
        )
    }


@pytest.fixture(autouse=True)
def _fresh_state_cache():
    clear_state_cache()
    yield
    clear_state_cache()


@pytest.mark.django_db
def test_in_order_and_shuffled_tasks_give_the_backtest_signals(settings):
    settings.STRATEGY = SPEC
    events = csv_events("ORD_BTC")
    store(events)
    expected = expected_signals(SPEC, "ORD_BTC", "5m")
    assert len(expected) >= 5, "the slice should produce several signals"

    for event in events:
        process_market_data(event)
    assert stored_signals("ORD_BTC") == expected

    for seed in (1, 2):
        forget_signals("ORD_BTC")
        clear_state_cache()
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        for event in shuffled:
            process_market_data(event)
        assert stored_signals("ORD_BTC") == expected


@pytest.mark.django_db
def test_cache_and_rebuild_paths_agree_candle_by_candle():
    events = csv_events("PATH_BTC", count=240)
    store(events)
    on_candle = strategy_from_spec(SPEC).on_candle
    reference = [on_candle(c) for c in history("PATH_BTC", "5m", events[-1]["timestamp"])]
    assert sum(signal is not None for signal in reference) >= 5, "the slice should produce signals"

    in_order = [evaluate(SPEC, "PATH_BTC", "5m", e["timestamp"]) for e in events]
    # While the whole history fits in the rows a task reads first anyway, it is simply replayed; then the cache.
    short = signal_service.TAIL + 1
    assert [path for _, _, path in in_order] == [f"rebuild+{n}" for n in range(1, short + 1)] + ["cache+1"] * (
        len(events) - short
    )
    assert [emitted for _, emitted, _ in in_order] == reference

    clear_state_cache()
    order = list(range(len(events)))
    random.Random(3).shuffle(order)
    results = {i: evaluate(SPEC, "PATH_BTC", "5m", events[i]["timestamp"]) for i in order}
    paths = {path.split("+")[0] for _, _, path in results.values()}
    assert paths == {"cache", "rebuild"}, paths  # both ways were exercised
    assert [results[i][1] for i in range(len(events))] == reference
    # The state a shuffled run leaves behind is the state of the uninterrupted run.
    uninterrupted = strategy_from_spec(SPEC)
    uninterrupted.run(history("PATH_BTC", "5m", events[-1]["timestamp"]))
    assert _same_state(results[len(events) - 1][0], uninterrupted)


@pytest.mark.django_db
def test_a_late_older_candle_makes_the_cache_not_line_up():
    events = csv_events("LATE_BTC", count=200)
    late = events.pop(120)
    store(events)
    for event in events:
        evaluate(SPEC, "LATE_BTC", "5m", event["timestamp"])  # every state cached, all without candle 120
    persist_market_data(late)

    strategy, emitted, path = evaluate(SPEC, "LATE_BTC", "5m", events[-1]["timestamp"])
    assert path.startswith("rebuild"), path
    full = history("LATE_BTC", "5m", events[-1]["timestamp"])
    reference = strategy_from_spec(SPEC)
    outputs = [reference.on_candle(c) for c in full]
    assert emitted == outputs[-1]
    assert _same_state(strategy, reference)


@pytest.mark.django_db
def test_a_refilled_table_is_not_mistaken_for_the_cached_one():
    events = csv_events("SWAP_BTC", count=120)
    store(events)
    for event in events:
        evaluate(SPEC, "SWAP_BTC", "5m", event["timestamp"])
    # Same timestamps, same count, the same values but two closes swapped: new rows all the same.
    Candle.objects.filter(symbol="SWAP_BTC").delete()
    swapped = [dict(e) for e in events]
    a, b = 60, 90
    for key in ("price", "close"):
        swapped[a][key], swapped[b][key] = events[b][key], events[a][key]
    for e in swapped:  # keep the candles valid: high/low around the new close
        e["high"], e["low"] = max(e["high"], e["close"], key=Decimal), min(e["low"], e["close"], key=Decimal)
    store(swapped)

    strategy, _, path = evaluate(SPEC, "SWAP_BTC", "5m", swapped[-1]["timestamp"])
    assert path == f"rebuild+{len(swapped)}", path
    reference = strategy_from_spec(SPEC)
    reference.run(history("SWAP_BTC", "5m", swapped[-1]["timestamp"]))
    assert _same_state(strategy, reference)


@pytest.mark.django_db
def test_a_forged_cache_entry_is_ignored():
    events = csv_events("FORGE_BTC", count=100)
    store(events)
    for event in events[:-1]:
        evaluate(SPEC, "FORGE_BTC", "5m", event["timestamp"])
    key = state_key(strategy_from_spec(SPEC), "FORGE_BTC", "5m", events[-2]["timestamp"])
    blob = state_store().get_many([key])[key]
    state_store().set(key, blob[:32] + blob[32:].replace(b"momentum", b"momentun"))  # payload changed, same MAC
    _, _, path = evaluate(SPEC, "FORGE_BTC", "5m", events[-1]["timestamp"])
    assert path == "cache+2", path  # skipped the forged newest entry, used the one before it


@pytest.mark.django_db
def test_a_signal_is_stored_with_its_components_published_once_and_not_twice(
    settings, django_capture_on_commit_callbacks
):
    settings.STRATEGY = SPEC
    events = csv_events("TWICE_BTC")
    store(events)
    candles = history("TWICE_BTC", "5m", events[-1]["timestamp"])
    reference = strategy_from_spec(SPEC).run(candles)[0]
    event = next(e for e in events if e["timestamp"] == reference.timestamp)

    with django_capture_on_commit_callbacks(execute=False) as published:
        first = process_market_data(event)
    assert first is not None and first.signal_id == f"TWICE_BTC:5m:momentum:{reference.timestamp}"
    stored = Signal.objects.get(signal_id=first.signal_id)
    assert (stored.side, stored.reason, stored.strategy) == (reference.side, reference.reason, "momentum")
    assert stored.components == reference.components  # every indicator value behind the decision, exactly
    assert stored.confidence == Decimal(str(reference.confidence)) and stored.price == Decimal(str(reference.price))
    # Published on the signals topic after commit, with the deterministic id.
    [payload] = announced(published, "signals")
    assert payload["signal_id"] == first.signal_id and payload["reason"] == reference.reason
    # exact decimal strings on the wire, the very floats the strategy computed
    assert float(payload["confidence"]) == reference.confidence and payload["side"] == reference.side
    assert isinstance(payload["confidence"], str) and float(payload["price"]) == reference.price

    with django_capture_on_commit_callbacks(execute=False) as again:
        assert process_market_data(event) is None  # redelivered: already stored, not published again
    assert not announced(again, "signals")
    assert Signal.objects.filter(symbol="TWICE_BTC").count() == 1


def announced(callbacks, topic: str) -> list[dict]:
    """The events that captured on_commit callbacks of the bus would publish on ``topic``: a dispatch
    (``partial(_dispatch, topic, event)``) or a batch of announcements (``events``: (topic, event) pairs)."""
    pairs = []
    for callback in callbacks:
        if hasattr(callback, "events"):
            pairs += callback.events
        elif getattr(callback, "args", None):
            pairs.append(callback.args)
    return [event for event_topic, event in pairs if event_topic == topic]


@pytest.mark.django_db
def test_no_stored_candle_no_signal(settings):
    settings.STRATEGY = SPEC
    event = csv_events("NONE_BTC", count=1)[0]
    assert process_market_data(event) is None
    assert evaluate(SPEC, "NONE_BTC", "5m", event["timestamp"])[2] == "missing"


SIGNAL_QUEUE = "cdb_signal_ordering_test"


@pytest.fixture
def momentum_workers(service_env, celery_workers, tmp_path):
    """Two more worker processes running the momentum strategy, on a queue of their own.

    The session workers are pinned to sma_cross (tests/support/series.py is worked out for it),
    whose window-only SMAs would be order-independent even without the state cache; momentum's
    EMAs and Wilder averages are what the cache and the full-history rebuild must get right.
    The session workers still take the signals' risk and execution tasks from the default queue.
    """
    env = {**service_env, "STRATEGY": SPEC}
    workers = []
    try:
        for name in ("sig1", "sig2"):
            args = [sys.executable, "-m", "celery", "-A", "cdb_project", "worker", "-l", "INFO", "-P", "prefork"]
            args += ["-c", "1", "-n", f"{name}@%h", "-Q", SIGNAL_QUEUE]
            args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
            worker = processes._spawn(name, args, env, tmp_path)
            workers.append(worker)
            processes._wait_for(worker, lambda w=worker: " ready." in w.output(), 60, "ready line")
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def _deliver_in_order_and_shuffled(spec: str, prefix: str, queue: str | None, count: int = 320) -> None:
    """Store the same candles under two symbols; send one's tasks in order, the other's shuffled; compare."""
    from cdb_project.celery import app
    from trading.tasks import on_market_data

    assert not app.conf.task_always_eager
    ordered, shuffled = csv_events(f"{prefix}SEQ_BTC", count=count), csv_events(f"{prefix}SHUF_BTC", count=count)
    store(ordered)
    store(shuffled)
    expected = expected_signals(spec, f"{prefix}SEQ_BTC", "5m")
    assert expected == expected_signals(spec, f"{prefix}SHUF_BTC", "5m") and len(expected) >= 5

    random.Random(11).shuffle(shuffled)
    assert [e["timestamp"] for e in shuffled] != sorted(e["timestamp"] for e in shuffled)
    options = {"queue": queue} if queue else {}
    in_flight_before = _tasks_in_flight()
    for event in ordered + shuffled:
        on_market_data.apply_async(args=[event], **options)

    template = strategy_from_spec(spec)
    keys = [state_key(template, e["symbol"], "5m", e["timestamp"]) for e in ordered + shuffled]
    # Every task leaves its candle's state in the shared cache as its last step before storing a signal.
    wait_until(
        lambda: len(state_store().get_many(keys)) == len(keys),
        timeout=180,
        interval=0.5,
        message="every market_data task done by the workers",
    )
    try:
        wait_until(
            lambda: (
                min(len(stored_signals(f"{prefix}SEQ_BTC")), len(stored_signals(f"{prefix}SHUF_BTC"))) >= len(expected)
            ),
            timeout=30,
            message="the signals stored",
        )
        assert stored_signals(f"{prefix}SEQ_BTC") == expected
        assert stored_signals(f"{prefix}SHUF_BTC") == expected
        ids = set(Signal.objects.filter(symbol=f"{prefix}SHUF_BTC").values_list("signal_id", flat=True))
        assert ids == {f"{prefix}SHUF_BTC:5m:{template.name}:{ts}" for ts, *_ in expected}
    finally:
        # Let the signals' risk/execution tasks finish before the test database is flushed under them: every task
        # counts itself down as it ends (bus.IN_FLIGHT_KEY), those the bus enqueued having counted up as they were
        # sent, those sent here not: all are done when the count is down by the tasks sent here.
        done = in_flight_before - len(ordered) - len(shuffled)
        wait_until(lambda: _broker_idle(queue, done), timeout=120, interval=0.2, message="the workers to go idle")


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_shuffled_delivery_through_the_momentum_workers_gives_the_in_order_signals(momentum_workers):
    _deliver_in_order_and_shuffled(SPEC, "M", SIGNAL_QUEUE)


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_shuffled_delivery_through_the_session_workers_gives_the_in_order_signals(celery_workers, service_env):
    """The session's two workers, with the strategy they were started with."""
    _deliver_in_order_and_shuffled(service_env.get("STRATEGY") or django_settings.STRATEGY, "S", None, count=200)


def _tasks_in_flight() -> int:
    import redis

    return int(redis.Redis.from_url(django_settings.REDIS_URL).get(bus.IN_FLIGHT_KEY) or 0)


def _broker_idle(extra_queue: str | None, in_flight: int) -> bool:
    """Every task ended (the count of tasks in flight down to ``in_flight``), none waiting in a queue and none taken
    but unacknowledged (acks_late)."""
    import redis

    client = redis.Redis.from_url(django_settings.REDIS_URL)
    patterns = ["celery*"] + ([f"{extra_queue}*"] if extra_queue else [])
    queues = {key for pattern in patterns for key in client.scan_iter(pattern) if client.type(key) == b"list"}
    return (
        _tasks_in_flight() <= in_flight and sum(client.llen(key) for key in queues) == 0 and client.hlen("unacked") == 0
    )
