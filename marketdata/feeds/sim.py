"""A seeded simulated market: random walks with drifting regimes (so momentum exists) and lognormal volume.

Pure and deterministic: the same seed, start and prices give the same candles. A market that carries on from
stored candles (``prices``: the last closes) mixes its start into the seed, so a restart does not replay the
first run's moves.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from ..candle import Candle

INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}
DEFAULT_SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT", "XRP_USDT")
START_PRICES = {"BTC_USDT": 35_000.0, "ETH_USDT": 1_800.0, "SOL_USDT": 60.0, "XRP_USDT": 0.6}


@dataclass
class _Walk:
    price: float
    drift: float
    regime_left: int
    base_volume: float


class SimulatedMarket:
    def __init__(
        self,
        symbols: list[str] | tuple[str, ...],
        seed: int,
        interval: str,
        start_ms: int,
        prices: Mapping[str, float] | None = None,
    ) -> None:
        if interval not in INTERVAL_MS:
            raise ValueError(f"unsupported interval {interval!r}; use one of {', '.join(INTERVAL_MS)}")
        self.symbols = list(symbols)
        self.stored_until: dict[str, int] = {}  # symbol → its newest stored candle time: not published again
        self.interval = interval
        self.step_ms = INTERVAL_MS[interval]
        self.timestamp = start_ms - start_ms % self.step_ms
        prices = dict(prices or {})
        self._rng = random.Random(f"{seed}:{self.timestamp}" if prices else seed)
        self._walks = {
            symbol: _Walk(
                price=prices.get(symbol) or START_PRICES.get(symbol, self._rng.uniform(1, 100)),
                drift=0.0,
                regime_left=0,
                base_volume=self._rng.uniform(50, 500),
            )
            for symbol in self.symbols
        }

    def next_candles(self) -> list[tuple[str, Candle]]:
        """One candle per symbol for the current timestamp, then advance the clock by one interval."""
        out = []
        for symbol in self.symbols:
            walk = self._walks[symbol]
            if walk.regime_left <= 0:
                walk.drift = self._rng.gauss(0, 0.0008)
                walk.regime_left = self._rng.randint(10, 40)
            walk.regime_left -= 1
            open_ = high = low = walk.price
            for _ in range(6):
                walk.price *= math.exp(walk.drift / 6 + self._rng.gauss(0, 0.0012))
                high, low = max(high, walk.price), min(low, walk.price)
            volume = walk.base_volume * math.exp(self._rng.gauss(0, 0.5)) * (1 + 200 * abs(walk.drift))
            out.append((symbol, Candle(self.timestamp, *(round(x, 8) for x in (open_, high, low, walk.price, volume)))))
        self.timestamp += self.step_ms
        return out


def pace(interval: str, tick_seconds: float) -> str:
    """How fast the simulated market runs against the wall clock, in words for the page."""
    step_s = INTERVAL_MS.get(interval, 60_000) / 1000
    if tick_seconds <= 0:
        return f"one {interval} candle as fast as it can be stored"
    return f"one {interval} candle every {tick_seconds:g} s of wall time ({step_s / tick_seconds:g}× real time)"
