from celery import shared_task

from ground.bus import RETRY_ON_DATABASE_ERRORS, batch_consumer, consumer, event_log_context
from risk.decision_service import MarketWatch, decide_signal, event_known_at, process_market_watch

from .signal_service import candle_key, evaluate_events, mark_decided, process_market_data, store_signal


@shared_task(name="trading.on_market_data", **RETRY_ON_DATABASE_ERRORS)
@consumer("market_data")
def on_market_data(event: dict) -> None:
    """The market_data consumer: the risk manager's watch first (drawdown halt, stop-loss exits settle before
    any new decision), then the signal engine. One task, so every worker sees the same order of effects."""
    watch = process_market_watch()
    watch(event)
    process_market_data(event, watch.known())


@shared_task(name="trading.on_market_data_batch", **RETRY_ON_DATABASE_ERRORS)
@batch_consumer("market_data")
def on_market_data_batch(events: list[dict]) -> None:
    """Several market_data events in time order, each with the effects ``on_market_data`` has, in the same order
    (the watch, then its signal): the strategy runs once per symbol over its candles, and the account is read
    again only when it changed (``MarketWatch``)."""
    outputs = evaluate_events(events)
    watch = MarketWatch(window_end=max(event_known_at(event) for event in events))
    for event in events:
        with event_log_context(event):
            watch(event)
            key = candle_key(event)
            strategy, emitted = outputs.get(key, ("", None))
            if emitted is not None:
                store_signal(strategy, *key, emitted, watch.known())


@shared_task(name="risk.on_signal", **RETRY_ON_DATABASE_ERRORS)  # its name from when it lived in risk/tasks.py
@consumer("signal")
def on_signal(event: dict) -> None:
    """The signals consumer: risk decides the signal once, and its stored row (trading's) is marked decided in the
    decision's transaction."""
    decide_signal(event, mark_decided)
