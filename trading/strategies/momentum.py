"""The momentum mix of the seeds: EMA crossover, RSI momentum band, volume spike, trend filter.

BUY — on the candle where the fast EMA crosses above the slow EMA (fast − slow goes
from ≤ 0 to > 0), if

* the RSI is inside the momentum band ``rsi_min`` … ``rsi_max`` (rising, not yet
  overbought), and
* the close is above the slow trend SMA (``trend_period``), and
* with ``require_volume=1`` only: the candle's volume is at least ``volume_spike``
  times the average of the previous ``volume_period`` volumes.

SELL — on the candle where the fast EMA crosses back below the slow EMA (momentum
reversed). The strategy knows nothing about positions: the risk layer turns a SELL
without an open position into a rejection (spot only), so the decision stays there.

Confidence (0–1) adds up the components::

    BUY  = 0.40 + 0.20 × rsi_score + 0.25 × volume_score + 0.15 × trend_score
    SELL = 0.50 + 0.30 × weakness  + 0.20 × volume_score

``rsi_score`` is 1 at the middle of the RSI band and 0 at its edges; ``volume_score``
is volume ratio / ``volume_spike`` capped at 1; ``trend_score`` is the close's distance
above the trend SMA as a fraction of ``trend_scale``, capped at 1; ``weakness`` is
(50 − RSI) / 25 clamped to 0–1. The reason carries the numbers, e.g.
``EMA12 crossed above EMA26 (0.05251 > 0.05248); RSI 41.2; volume 2.3× avg;
close 0.05251 above SMA50 0.0523``; the exact values are in ``components``.
"""

from __future__ import annotations

from ..indicators import EMA, RSI, SMA, VolumeMA
from .base import Candle, Param, Signal, Strategy


def _clamp01(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


class Momentum(Strategy):
    name = "momentum"
    params = {
        "ema_fast": Param(12, 2, 200, help="fast EMA period"),
        "ema_slow": Param(26, 3, 500, help="slow EMA period (above ema_fast)"),
        "rsi_period": Param(14, 2, 100, help="RSI period (Wilder)"),
        "rsi_min": Param(40.0, 0.0, 100.0, integer=False, help="lowest RSI for a BUY"),
        "rsi_max": Param(70.0, 0.0, 100.0, integer=False, help="highest RSI for a BUY (overbought above)"),
        "volume_period": Param(20, 2, 500, help="candles in the volume average"),
        "volume_spike": Param(1.5, 1.0, 50.0, integer=False, help="volume / average that counts as a spike"),
        "require_volume": Param(0, 0, 1, help="1: a BUY needs a volume spike; 0: the spike only adds confidence"),
        "trend_period": Param(50, 2, 1000, help="trend filter SMA period; a BUY needs the close above it"),
        "trend_scale": Param(0.01, 0.0001, 1.0, integer=False, help="distance above the trend SMA scoring fully"),
    }

    def validate(self) -> None:
        v = self.values
        if v["ema_fast"] >= v["ema_slow"]:
            raise ValueError(
                f"{self.name}: parameter ema_fast={v['ema_fast']} must be below ema_slow={v['ema_slow']} "
                f"(allowed: 2–{v['ema_slow'] - 1})"
            )
        if v["rsi_min"] > v["rsi_max"]:
            raise ValueError(
                f"{self.name}: parameter rsi_min={v['rsi_min']:g} must not exceed rsi_max={v['rsi_max']:g} "
                f"(allowed: 0–{v['rsi_max']:g})"
            )
        self._fast = EMA(v["ema_fast"])
        self._slow = EMA(v["ema_slow"])
        self._rsi = RSI(v["rsi_period"])
        self._volume = VolumeMA(v["volume_period"])
        self._trend = SMA(v["trend_period"])
        self._diff: float | None = None
        self._rsi_mid = (v["rsi_min"] + v["rsi_max"]) / 2
        self._rsi_half = (v["rsi_max"] - v["rsi_min"]) / 2

    @property
    def warmup(self) -> int:
        v = self.values
        # The cross needs the slow EMA on this candle and the last; the volume ratio the average of the
        # *previous* volume_period candles; RSI needs rsi_period changes; the trend SMA trend_period closes.
        return max(v["ema_slow"] + 1, v["rsi_period"] + 1, v["volume_period"] + 1, v["trend_period"])

    def on_candle(self, candle: Candle) -> Signal | None:
        close = candle.close
        fast = self._fast.update(close)
        slow = self._slow.update(close)
        rsi = self._rsi.update(close)
        trend = self._trend.update(close)
        volume_ma = self._volume
        average = volume_ma.value  # the average of the previous candles' volumes
        volume_ma.update(candle.volume)
        if slow is None:
            return None
        diff = fast - slow
        previous = self._diff
        self._diff = diff
        if previous is None:
            return None
        if previous <= 0.0:
            if diff <= 0.0:
                return None
            buy = True
        elif diff > 0.0:
            return None
        else:
            buy = False
        if rsi is None or trend is None or average is None:
            return None  # still warming up
        return self._decide(buy, candle, fast, slow, rsi, trend, average)

    def _decide(
        self, buy: bool, candle: Candle, fast: float, slow: float, rsi: float, trend: float, average: float
    ) -> Signal | None:
        v = self.values
        close, volume = candle.close, candle.volume
        ratio = volume / average if average > 0.0 else 0.0
        volume_score = _clamp01(ratio / v["volume_spike"])
        ema = f"EMA{v['ema_fast']} crossed {'above' if buy else 'below'} EMA{v['ema_slow']}"
        volume_text = f"volume {ratio:.1f}× avg"
        components = {
            "ema_fast": fast,
            "ema_slow": slow,
            "rsi": rsi,
            "volume": volume,
            "volume_avg": average,
            "volume_ratio": ratio,
            "trend_sma": trend,
            "close": close,
            "volume_score": volume_score,
        }
        if buy:
            if not v["rsi_min"] <= rsi <= v["rsi_max"]:
                return None
            if not close > trend:
                return None
            if v["require_volume"] and ratio < v["volume_spike"]:
                return None
            half = self._rsi_half
            rsi_score = _clamp01(1.0 - abs(rsi - self._rsi_mid) / half) if half > 0.0 else 1.0
            trend_score = _clamp01((close / trend - 1.0) / v["trend_scale"])
            confidence = 0.40 + 0.20 * rsi_score + 0.25 * volume_score + 0.15 * trend_score
            components.update(rsi_score=rsi_score, trend_score=trend_score)
            reason = (
                f"{ema} ({fast:.8g} > {slow:.8g}); RSI {rsi:.1f}; {volume_text}; "
                f"close {close:.8g} above SMA{v['trend_period']} {trend:.8g}"
            )
        else:
            weakness = _clamp01((50.0 - rsi) / 25.0)
            confidence = 0.50 + 0.30 * weakness + 0.20 * volume_score
            components.update(weakness=weakness)
            reason = f"{ema} ({fast:.8g} < {slow:.8g}); RSI {rsi:.1f}; {volume_text}; momentum reversed"
        confidence = round(_clamp01(confidence), 4)
        components["confidence"] = confidence
        return Signal(
            side="BUY" if buy else "SELL",
            confidence=confidence,
            reason=reason,
            price=close,
            timestamp=candle.timestamp,
            components=components,
        )
