"""Streaming technical indicators: O(1) time and small state per update, equal to TA-Lib after warm-up.

Every indicator is fed one value at a time. ``update`` returns ``None`` until the
indicator is warm, then its current value; ``value`` holds the last one. The
arithmetic follows TA-Lib's C code operation for operation (same seeds, same
order of additions and divisions), so after TA-Lib's own lookback the results
agree with ``talib`` to float rounding (the tests demand a relative error of at
most 1e-9 on every shared candle file):

=====================  ============================================  ==========================
indicator              TA-Lib reference                              first value after
=====================  ============================================  ==========================
``SMA(n)``             ``talib.SMA(x, n)``                           n updates
``EMA(n)``             ``talib.EMA(x, n)`` (seeded with the SMA)     n updates
``RSI(n)``             ``talib.RSI(x, n)`` (Wilder smoothing)        n + 1 updates
``MACD(f, s, g)``      ``talib.MACD(x, f, s, g)``                    s + g - 1 updates
``BollingerBands(n)``  ``talib.BBANDS(x, n, k, k, MA_Type.SMA)``     n updates
``ATR(n)``             ``talib.ATR(h, l, c, n)`` (Wilder smoothing)  n + 1 updates
``VolumeMA(n)``        ``talib.SMA(volume, n)``                      n updates
=====================  ============================================  ==========================

No numpy, no TA-Lib at run time: TA-Lib is only the test reference. The classes
use ``__slots__`` and keep their hot paths short because the strategies call
them once per candle in the live path and in the backtest alike. They pickle
(the signal service caches strategy state between candles).
"""

from __future__ import annotations

from collections import deque
from math import sqrt

__all__ = ["ATR", "EMA", "MACD", "RSI", "SMA", "BollingerBands", "VolumeMA", "check_period"]


def check_period(name: str, period: int, minimum: int = 1) -> int:
    """Validate a look-back length; raise ValueError naming the indicator, the value and the allowed range."""
    if isinstance(period, bool) or not isinstance(period, int) or period < minimum:
        raise ValueError(f"{name}: period must be an integer ≥ {minimum}, got {period!r}")
    return period


class SMA:
    """Simple moving average over the last ``period`` values.

    TA-Lib keeps a running total: add the newest value, divide, then subtract the
    oldest. Doing exactly that (rather than re-summing the window) keeps the result
    bit-identical to ``talib.SMA``.
    """

    __slots__ = ("period", "value", "_window", "_total", "_size")

    def __init__(self, period: int) -> None:
        self.period = check_period(type(self).__name__, period)
        self.value: float | None = None
        self._window: deque[float] = deque()
        self._total = 0.0
        self._size = float(period)  # the divisor as a float: float / float is the interpreter's fast path

    @property
    def warmup(self) -> int:
        return self.period

    def update(self, x: float) -> float | None:
        window = self._window
        window.append(x)
        total = self._total + x
        if len(window) < self.period:
            self._total = total
            return None
        value = self.value = total / self._size
        self._total = total - window.popleft()
        return value


class VolumeMA(SMA):
    """The moving average of volume (an SMA fed with volumes; reference ``talib.SMA(volume, n)``)."""

    __slots__ = ()


class EMA:
    """Exponential moving average, k = 2 / (period + 1), seeded with the SMA of the first ``period`` values."""

    __slots__ = ("period", "value", "_k", "_seed", "_count")

    def __init__(self, period: int) -> None:
        self.period = check_period("EMA", period)
        self.value: float | None = None
        self._k = 2.0 / (period + 1)
        self._seed = 0.0
        self._count = 0

    @property
    def warmup(self) -> int:
        return self.period

    def update(self, x: float) -> float | None:
        value = self.value
        if value is not None:
            value = (x - value) * self._k + value
            self.value = value
            return value
        self._seed += x
        self._count += 1
        if self._count < self.period:
            return None
        value = self.value = self._seed / self.period
        return value


class RSI:
    """Relative strength index with Wilder's smoothing (TA-Lib's classic, unstable period 0).

    The first average gain/loss is the plain mean of the first ``period`` changes; after
    that avg = (avg × (period − 1) + change) / period. RSI = 100 × gain / (gain + loss),
    and 0 when both are zero (a flat series), as TA-Lib does.
    """

    __slots__ = ("period", "value", "_previous", "_gain", "_loss", "_count", "_size", "_keep")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("RSI", period, 2)
        self.value: float | None = None
        self._previous: float | None = None
        self._gain = 0.0
        self._loss = 0.0
        self._count = 0
        # period and period - 1 as floats: the same products and quotients as with the ints (exact conversions),
        # on the interpreter's float-only fast path
        self._size = float(period)
        self._keep = float(period - 1)

    @property
    def warmup(self) -> int:
        return self.period + 1

    def update(self, x: float) -> float | None:
        previous = self._previous
        self._previous = x
        if previous is None:
            return None
        change = x - previous
        if self.value is not None:
            gain = self._gain * self._keep
            loss = self._loss * self._keep
            if change < 0.0:
                loss -= change
            else:
                gain += change
            gain /= self._size
            loss /= self._size
        else:
            gain, loss = self._gain, self._loss
            if change < 0.0:
                loss -= change
            else:
                gain += change
            self._count += 1
            if self._count < self.period:
                self._gain, self._loss = gain, loss
                return None
            gain /= self._size
            loss /= self._size
        self._gain, self._loss = gain, loss
        total = gain + loss
        value = self.value = 100.0 * (gain / total) if total != 0.0 else 0.0
        return value


class MACD:
    """MACD line (fast EMA − slow EMA), its signal EMA and the histogram, as ``talib.MACD``.

    TA-Lib lines the two EMAs up: the fast EMA is seeded on the ``fast`` values that end
    where the slow EMA's seed ends, so it ignores the first ``slow − fast`` inputs. The
    signal line is an EMA of the MACD line seeded with the mean of its first ``signal``
    values. ``update`` returns ``(macd, signal, histogram)``.
    """

    __slots__ = ("fast", "slow", "signal", "value", "_fast", "_slow", "_signal", "_skip")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        check_period("MACD fast", fast, 2)
        check_period("MACD slow", slow, 2)
        check_period("MACD signal", signal, 1)
        if slow < fast:  # TA-Lib swaps them
            fast, slow = slow, fast
        self.fast, self.slow, self.signal = fast, slow, signal
        self.value: tuple[float, float, float] | None = None
        self._fast = EMA(fast)
        self._slow = EMA(slow)
        self._signal = EMA(signal)
        self._skip = slow - fast

    @property
    def warmup(self) -> int:
        return self.slow + self.signal - 1

    def update(self, x: float) -> tuple[float, float, float] | None:
        slow = self._slow.update(x)
        if self._skip:
            self._skip -= 1
            return None
        fast = self._fast.update(x)
        if slow is None:
            return None
        line = fast - slow
        signal = self._signal.update(line)
        if signal is None:
            return None
        value = self.value = (line, signal, line - signal)
        return value


class BollingerBands:
    """SMA middle band ± ``nbdev`` population standard deviations over ``period`` values.

    The middle band is TA-Lib's running-total SMA. The variance is kept with a sliding
    Welford update (O(1), no catastrophic cancellation for tiny BTC-quoted prices). Two
    guards keep it equal to TA-Lib's (which sums squared deviations from the middle band
    over the window) to float rounding: every ``period`` updates the sum is recomputed
    from the window, so rounding drift never outlives one window (amortised O(1)); and
    when the deviation is below 1e-7 of the price — a flat window, where drift would be
    as large as the value itself — it is computed exactly from the window the way TA-Lib
    does. ``update`` returns ``(upper, middle, lower)``.
    """

    __slots__ = ("period", "nbdev", "value", "_sma", "_window", "_mean", "_m2", "_since")

    FLAT = 1e-7  # deviation / |middle| below which the window is summed exactly

    def __init__(self, period: int = 20, nbdev: float = 2.0) -> None:
        self.period = check_period("BollingerBands", period, 2)
        if not nbdev > 0:
            raise ValueError(f"BollingerBands: nbdev must be > 0, got {nbdev!r}")
        self.nbdev = float(nbdev)
        self.value: tuple[float, float, float] | None = None
        self._sma = SMA(period)
        self._window: deque[float] = deque()
        self._mean = 0.0
        self._m2 = 0.0
        self._since = 0

    @property
    def warmup(self) -> int:
        return self.period

    def update(self, x: float) -> tuple[float, float, float] | None:
        middle = self._sma.update(x)
        window = self._window
        window.append(x)
        period = self.period
        mean = self._mean
        if len(window) <= period:  # growing: plain Welford
            new_mean = mean + (x - mean) / len(window)
            m2 = self._m2 + (x - mean) * (x - new_mean)
        else:  # sliding: replace the oldest value in one step
            old = window.popleft()
            new_mean = mean + (x - old) / period
            m2 = self._m2 + (x - old) * (x - new_mean + old - mean)
        self._since += 1
        if self._since >= period:  # resynchronise: drift lives at most one window
            self._since = 0
            new_mean = sum(window) / len(window)
            m2 = sum((v - new_mean) * (v - new_mean) for v in window)
        self._mean, self._m2 = new_mean, m2
        if middle is None:
            return None
        variance = m2 / period
        flat = self.FLAT * middle
        if variance < flat * flat:  # flat window: sum exactly around the middle band, as TA-Lib does
            variance = sum((v - middle) * (v - middle) for v in window) / period
        deviation = self.nbdev * sqrt(variance) if variance > 0.0 else 0.0
        value = self.value = (middle + deviation, middle, middle - deviation)
        return value


class ATR:
    """Average true range with Wilder's smoothing, seeded with the mean of the first ``period`` true ranges.

    The first candle has no previous close, so its true range is skipped (as TA-Lib
    does); ``update(high, low, close)`` first returns a value on candle ``period + 1``.
    """

    __slots__ = ("period", "value", "_close", "_seed", "_count")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("ATR", period, 2)
        self.value: float | None = None
        self._close: float | None = None
        self._seed = 0.0
        self._count = 0

    @property
    def warmup(self) -> int:
        return self.period + 1

    def update(self, high: float, low: float, close: float) -> float | None:
        previous = self._close
        self._close = close
        if previous is None:
            return None
        true_range = high - low
        up = abs(previous - high)
        if up > true_range:
            true_range = up
        down = abs(previous - low)
        if down > true_range:
            true_range = down
        value = self.value
        if value is not None:
            value = self.value = (value * (self.period - 1) + true_range) / self.period
            return value
        self._seed += true_range
        self._count += 1
        if self._count < self.period:
            return None
        value = self.value = self._seed / self.period
        return value
