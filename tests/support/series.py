"""Hand-made candle series with a known crossing, published through the real bus."""

from __future__ import annotations

from ground import bus
from marketdata.ingest import market_data_event

BASE_TS = 1_730_443_200_000  # 2024-11-01 06:40 UTC
STEP_MS = 60_000
CROSS_INDEX = 25
# The candle after the crossing opens here: a paper order waits for its symbol's next candle and fills at its open,
# the first price known after the decision (110, the crossing's close), never at the signal candle's close.
NEXT_OPEN = 110.2
NEXT_CLOSE = 110.4


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


def next_event(
    evts: list[dict], open_: float = NEXT_OPEN, close: float = NEXT_CLOSE, volume: float | None = None
) -> dict:
    """The market_data event of the candle after ``evts``' last one (same symbol and interval, one step later),
    opening at ``open_``: what the orders decided on that last candle fill at (× (1 ± PAPER_SLIPPAGE_PCT))."""
    last = evts[-1]
    volume = float(last["volume"]) + 1 if volume is None else volume  # events carry exact decimal strings
    high, low = max(open_, close) * 1.001, min(open_, close) * 0.999
    return market_data_event(
        last["symbol"], last["interval"], last["timestamp"] + STEP_MS, open_, high, low, close, volume
    )


def filled_events(symbol: str = "TEST_USDT", base_ts: int = BASE_TS) -> list[dict]:
    """The crossing series and the candle after it: its BUY (decided at 110) fills at NEXT_OPEN × 1.0005."""
    evts = events(symbol, base_ts=base_ts)
    return [*evts, next_event(evts)]


def publish_all(evts: list[dict]) -> None:
    for event in evts:
        bus.publish(event)
