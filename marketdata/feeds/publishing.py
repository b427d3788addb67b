"""Feeding candles into the pipeline through the event bus."""

from __future__ import annotations

from ground import bus

from ..candle import Candle
from ..ingest import market_data_event


def publish_candle(symbol: str, interval: str, candle: Candle) -> dict:
    """Publish one candle as market_data: the bus stores it, then the signal task runs on it."""
    return bus.publish(
        market_data_event(
            symbol, interval, candle.timestamp, candle.open, candle.high, candle.low, candle.close, candle.volume
        )
    )
