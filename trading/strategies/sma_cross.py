"""A simple moving-average crossover: BUY when the fast SMA crosses above the slow one, SELL below."""

from __future__ import annotations

from collections import deque

from .base import Candle, Param, Signal, Strategy


class SmaCross(Strategy):
    name = "sma_cross"
    params = {"fast": Param(5, 2, 200), "slow": Param(20, 3, 500)}

    def validate(self) -> None:
        if self.values["fast"] >= self.values["slow"]:
            raise ValueError(f"{self.name}: fast ({self.values['fast']}) must be below slow ({self.values['slow']})")
        self._closes: deque[float] = deque(maxlen=self.values["slow"])
        self._previous_diff: float | None = None

    @property
    def warmup(self) -> int:
        return self.values["slow"] + 1

    def on_candle(self, candle: Candle) -> Signal | None:
        self._closes.append(candle.close)
        fast_n, slow_n = self.values["fast"], self.values["slow"]
        if len(self._closes) < slow_n:
            return None
        closes = list(self._closes)
        fast = sum(closes[-fast_n:]) / fast_n
        slow = sum(closes) / slow_n
        diff, previous = fast - slow, self._previous_diff
        self._previous_diff = diff
        if previous is None or (previous <= 0) == (diff <= 0):
            return None
        side = "BUY" if diff > 0 else "SELL"
        direction = "above" if side == "BUY" else "below"
        confidence = min(1.0, 0.5 + abs(diff) / slow * 50)
        return Signal(
            side=side,
            confidence=round(confidence, 4),
            reason=f"SMA{fast_n} crossed {direction} SMA{slow_n} ({fast:.8g} vs {slow:.8g})",
            price=candle.close,
            timestamp=candle.timestamp,
            components={"sma_fast": fast, "sma_slow": slow},
        )
