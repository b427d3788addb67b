"""What a price chart shows, as pure functions: candles resampled to a chosen interval and the strategy's indicators.

The indicator values come from the classes in ``trading/indicators.py`` that the strategies decide with, fed
candle by candle exactly as ``Strategy.on_candle`` feeds them; the browser only draws them (never recomputes).
No ORM, no clock: ``trading/chart_service.py`` reads the rows and calls these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple

from ground.amounts import plain
from ground.timeutil import MINUTE_MS

from .indicators import EMA, RSI, SMA
from .strategies import build_strategy, parse_spec

INTERVALS: dict[str, int] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}


class Bar(NamedTuple):
    """A candle: the store's exact Decimals (a backtest's file: floats). ``as_json`` gives its decimal strings."""

    time: int  # open time, epoch ms
    open: Decimal | float
    high: Decimal | float
    low: Decimal | float
    close: Decimal | float
    volume: Decimal | float

    def as_json(self) -> dict:
        """``{time, open, high, low, close, volume}`` with exact decimal strings, as every JSON the system sends
        (the browser converts them for drawing)."""
        return {"time": self.time, **{name: plain(getattr(self, name)) for name in PRICE_FIELDS}}


PRICE_FIELDS = ("open", "high", "low", "close", "volume")


class IndicatorSpec(NamedTuple):
    """One line to draw: its name (``EMA12``), the pane (``price`` or an oscillator's own pane) and the indicator
    object fed each close. ``guides`` are horizontal levels drawn in that pane (the RSI band)."""

    name: str
    pane: str
    indicator: object
    guides: tuple[float, ...] = ()


def interval_ms(interval: str) -> int:
    """``"5m"`` → 300000; unknown intervals raise ValueError naming the ones allowed."""
    try:
        return INTERVALS[interval]
    except KeyError:
        raise ValueError(f"interval {interval!r}: use one of {', '.join(INTERVALS)}") from None


def coarser_intervals(base: str) -> list[str]:
    """The intervals a chart of ``base`` candles can show: ``base`` and every whole multiple of it."""
    step = interval_ms(base)
    return [name for name, ms in INTERVALS.items() if ms >= step and ms % step == 0]


def resample(bars: Iterable[Bar], bucket_ms: int) -> list[Bar]:
    """Aggregate time-ordered bars into buckets of ``bucket_ms`` (open of the first, close of the last)."""
    out: list[Bar] = []
    for bar in bars:
        start = bar.time - bar.time % bucket_ms
        if out and out[-1].time == start:
            last = out[-1]
            out[-1] = Bar(
                start, last.open, max(last.high, bar.high), min(last.low, bar.low), bar.close, last.volume + bar.volume
            )
        else:
            out.append(bar._replace(time=start))
    return out


def _momentum(v: dict) -> list[IndicatorSpec]:
    return [
        IndicatorSpec(f"EMA{v['ema_fast']}", "price", EMA(v["ema_fast"])),
        IndicatorSpec(f"EMA{v['ema_slow']}", "price", EMA(v["ema_slow"])),
        IndicatorSpec(f"SMA{v['trend_period']}", "price", SMA(v["trend_period"])),
        IndicatorSpec(f"RSI{v['rsi_period']}", "rsi", RSI(v["rsi_period"]), (v["rsi_min"], v["rsi_max"])),
    ]


def _sma_cross(v: dict) -> list[IndicatorSpec]:
    return [
        IndicatorSpec(f"SMA{v['fast']}", "price", SMA(v["fast"])),
        IndicatorSpec(f"SMA{v['slow']}", "price", SMA(v["slow"])),
    ]


# The indicators each strategy decides with (a strategy without an entry draws candles and volume only).
STRATEGY_INDICATORS: dict[str, Callable[[dict], list[IndicatorSpec]]] = {"momentum": _momentum, "sma_cross": _sma_cross}


def strategy_indicators(spec: str) -> tuple[str, list[IndicatorSpec], int]:
    """The strategy named by ``spec`` (``"momentum"`` or ``"name:key=value,…"``): its name, fresh indicator objects
    with its parameters, and its warm-up length in candles."""
    name, params = parse_spec(spec)
    strategy = build_strategy(name, **params)
    factory = STRATEGY_INDICATORS.get(name)
    return name, factory(strategy.values) if factory else [], strategy.warmup


def indicator_series(specs: Sequence[IndicatorSpec], bars: Iterable[Bar], shown_from: int) -> list[dict]:
    """Feed every bar's close to each indicator, in order; keep the values of bars at or after ``shown_from``
    (the bars before it are warm-up), fed as floats, as the strategies feed them. Each line: ``{name, pane, guides,
    values: [[time_ms, value], …]}``, the value the exact decimal string of the float computed."""
    lines = [{"name": s.name, "pane": s.pane, "guides": list(s.guides), "values": []} for s in specs]
    for bar in bars:
        close = float(bar.close)
        for spec, line in zip(specs, lines, strict=True):
            value = spec.indicator.update(close)
            if bar.time >= shown_from and value is not None and math.isfinite(value):
                line["values"].append([bar.time, plain(value)])
    return lines
