"""Hand-made candle series with a known crossing, published through the real bus."""

from __future__ import annotations

from cdb_project import bus
from marketdata.ingest import market_data_event

BASE_TS = 1_730_443_200_000  # 2024-11-01 06:40 UTC
STEP_MS = 60_000
CROSS_INDEX = 25


def crossing_prices() -> list[float]:
    """25 slowly falling closes, then a jump. For SMA5/SMA20 the cross happens exactly at index 25:
    fast = (97.9 + 97.8 + 97.7 + 97.6 + 110) / 5 = 100.2 > slow = (1871.5 + 110) / 20 = 99.075,
    while at index 24 fast = 97.8 < slow = 98.55."""
    return [round(100 - 0.1 * i, 6) for i in range(CROSS_INDEX)] + [110.0]


def events(symbol: str = "TEST_USDT", prices: list[float] | None = None, base_ts: int = BASE_TS) -> list[dict]:
    prices = prices or crossing_prices()
    return [
        market_data_event(symbol, "1m", base_ts + i * STEP_MS, p, p * 1.001, p * 0.999, p, 100 + i)
        for i, p in enumerate(prices)
    ]


def publish_all(evts: list[dict]) -> None:
    for event in evts:
        bus.publish(event)
