"""The candle as the plain objects see it (strategies, the backtest, the feeds): numbers, no ORM."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candle:
    timestamp: int  # open time, epoch ms
    open: float
    high: float
    low: float
    close: float
    volume: float
