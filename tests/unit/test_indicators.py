"""Streaming indicators against TA-Lib (the test-only reference) on every shared candle file.

After TA-Lib's own lookback every value must agree to a relative error of at most
1e-9, and the streaming indicator must return None exactly where TA-Lib has no value yet.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.paths import CANDLES
from trading.indicators import ATR, EMA, MACD, RSI, SMA, BollingerBands, VolumeMA

talib = pytest.importorskip("talib")

DATA = CANDLES
pytestmark = pytest.mark.shared_data
FILES = sorted(DATA.glob("*.csv"))
RTOL = 1e-9


def test_the_shared_candle_files_are_there():
    assert len(FILES) >= 7, f"expected the shared candle files in {DATA}"


def _load(path: Path) -> dict[str, np.ndarray]:
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    data = data[np.argsort(data[:, 0], kind="stable")]
    return dict(zip(("timestamp", "open", "high", "low", "close", "volume"), data.T, strict=True))


@pytest.fixture(scope="module", params=FILES, ids=[path.stem for path in FILES])
def candles(request) -> dict[str, np.ndarray]:
    return _load(request.param)


def _stream(indicator, *columns: np.ndarray, width: int = 1) -> np.ndarray:
    """Feed the columns row by row; NaN where update returned None (as TA-Lib leaves its lookback)."""
    update = indicator.update
    out = np.full((len(columns[0]), width), np.nan)
    for i, row in enumerate(zip(*(column.tolist() for column in columns), strict=True)):
        value = update(*row)
        if value is not None:
            out[i] = value
    return out if width > 1 else out[:, 0]


def assert_matches(ours: np.ndarray, reference: np.ndarray, what: str) -> None:
    warm = ~np.isnan(reference)
    assert warm.any(), f"{what}: TA-Lib produced no value at all"
    # The same warm-up: None exactly where TA-Lib has no value, a value everywhere else.
    assert np.array_equal(np.isnan(ours), ~warm), f"{what}: warm-up differs (first value at {np.argmax(warm)})"
    a, b = ours[warm], reference[warm]
    error = np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)
    worst = int(np.argmax(error))
    assert error[worst] <= RTOL, f"{what}: relative error {error[worst]:.3g} at {worst}: {a[worst]!r} vs {b[worst]!r}"


@pytest.mark.parametrize("period", [2, 5, 20, 50, 200])
def test_sma(candles, period):
    assert_matches(_stream(SMA(period), candles["close"]), talib.SMA(candles["close"], period), f"SMA{period}")


@pytest.mark.parametrize("period", [2, 9, 12, 26, 100])
def test_ema(candles, period):
    assert_matches(_stream(EMA(period), candles["close"]), talib.EMA(candles["close"], period), f"EMA{period}")


@pytest.mark.parametrize("period", [2, 6, 14, 30])
def test_rsi(candles, period):
    assert_matches(_stream(RSI(period), candles["close"]), talib.RSI(candles["close"], period), f"RSI{period}")


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 16), (26, 12, 9)])
def test_macd(candles, fast, slow, signal):
    ours = _stream(MACD(fast, slow, signal), candles["close"], width=3)
    reference = talib.MACD(candles["close"], fast, slow, signal)
    for column, name in enumerate(("macd", "signal", "hist")):
        assert_matches(ours[:, column], reference[column], f"MACD({fast},{slow},{signal}).{name}")


@pytest.mark.parametrize(("period", "nbdev"), [(20, 2.0), (5, 2.0), (50, 1.5), (10, 3.0)])
def test_bollinger_bands(candles, period, nbdev):
    ours = _stream(BollingerBands(period, nbdev), candles["close"], width=3)
    reference = talib.BBANDS(candles["close"], period, nbdev, nbdev, talib.MA_Type.SMA)
    for column, name in enumerate(("upper", "middle", "lower")):
        assert_matches(ours[:, column], reference[column], f"BBANDS({period},{nbdev}).{name}")


@pytest.mark.parametrize("period", [2, 7, 14, 50])
def test_atr(candles, period):
    ours = _stream(ATR(period), candles["high"], candles["low"], candles["close"])
    assert_matches(ours, talib.ATR(candles["high"], candles["low"], candles["close"], period), f"ATR{period}")


@pytest.mark.parametrize("period", [5, 20])
def test_volume_ma(candles, period):
    assert_matches(_stream(VolumeMA(period), candles["volume"]), talib.SMA(candles["volume"], period), "VolumeMA")


def test_the_comparison_can_fail():
    """An EMA fed one perturbed value must be caught by the same check (no tautology)."""
    closes = _load(FILES[0])["close"][:500]
    nudged = closes.copy()
    nudged[300] *= 1 + 1e-6
    with pytest.raises(AssertionError, match="relative error"):
        assert_matches(_stream(EMA(12), nudged), talib.EMA(closes, 12), "EMA12")
    with pytest.raises(AssertionError, match="warm-up differs"):
        assert_matches(_stream(EMA(13), closes), talib.EMA(closes, 12), "EMA12")


def test_the_state_stays_small():
    """O(1) per update: nothing grows with the number of values fed, windows hold at most `period` values."""
    closes = _load(FILES[0])["close"].tolist()
    sma, bands, macd, rsi, atr = SMA(20), BollingerBands(20), MACD(), RSI(14), ATR(14)
    for x in closes:
        sma.update(x)
        bands.update(x)
        macd.update(x)
        rsi.update(x)
        atr.update(x * 1.01, x * 0.99, x)
    assert len(sma._window) < 20 and len(bands._window) <= 20
    for indicator in (macd, rsi, atr):
        assert len(pickle.dumps(indicator)) < 600
    assert len(pickle.dumps(sma)) < 20 * 12 + 300


def test_value_and_warmup_report_the_state():
    ema = EMA(3)
    assert ema.warmup == 3 and [ema.update(x) for x in (1.0, 2.0)] == [None, None] and ema.value is None
    assert ema.update(6.0) == 3.0 and ema.value == 3.0
    assert ema.update(7.0) == 5.0  # (7 − 3) × 0.5 + 3
    assert MACD(12, 26, 9).warmup == 34 and RSI(14).warmup == 15 and ATR(14).warmup == 15


def test_a_pickled_indicator_continues_identically():
    closes = _load(FILES[1])["close"].tolist()
    straight, resumed = MACD(), MACD()
    expected = [straight.update(x) for x in closes]
    got = []
    for i, x in enumerate(closes):
        if i % 250 == 0:
            resumed = pickle.loads(pickle.dumps(resumed))
        got.append(resumed.update(x))
    assert got == expected


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SMA(0), "SMA: period must be an integer ≥ 1, got 0"),
        (lambda: EMA(2.5), "EMA: period must be an integer ≥ 1, got 2.5"),
        (lambda: RSI(1), "RSI: period must be an integer ≥ 2, got 1"),
        (lambda: ATR(-3), "ATR: period must be an integer ≥ 2, got -3"),
        (lambda: MACD(12, 26, 0), "MACD signal: period must be an integer ≥ 1, got 0"),
        (lambda: BollingerBands(20, 0), "BollingerBands: nbdev must be > 0"),
        (lambda: VolumeMA(True), "VolumeMA: period must be an integer ≥ 1, got True"),
    ],
)
def test_bad_periods_are_refused_by_name(factory, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        factory()


@settings(max_examples=60, deadline=None)
@given(
    start=st.floats(min_value=1e-5, max_value=1e5),
    steps=st.lists(st.floats(min_value=-0.05, max_value=0.05), min_size=1, max_size=150),
    period=st.integers(min_value=2, max_value=30),
)
def test_random_walks_match_talib(start, steps, period):
    closes = np.array([start * float(np.prod([1 + s for s in steps[:i]])) for i in range(len(steps))])
    highs, lows = closes * 1.002, closes * 0.997
    scale = float(np.max(np.abs(closes)))

    def close_enough(ours, reference, what, absolute):
        warm = ~np.isnan(reference)
        assert np.array_equal(np.isnan(ours), ~warm), what
        np.testing.assert_allclose(ours[warm], reference[warm], rtol=RTOL, atol=absolute, err_msg=what)

    close_enough(_stream(SMA(period), closes), talib.SMA(closes, period), "SMA", 0)
    close_enough(_stream(EMA(period), closes), talib.EMA(closes, period), "EMA", 0)
    # RSI and MACD pass through zero: there an absolute floor far below any meaningful difference.
    close_enough(_stream(RSI(period), closes), talib.RSI(closes, period), "RSI", 1e-9)
    close_enough(_stream(ATR(period), highs, lows, closes), talib.ATR(highs, lows, closes, period), "ATR", 0)
    ours = _stream(MACD(period, period + 7, 4), closes, width=3)
    for column, reference in enumerate(talib.MACD(closes, period, period + 7, 4)):
        close_enough(ours[:, column], reference, "MACD", scale * 1e-12)
    ours = _stream(BollingerBands(period), closes, width=3)
    for column, reference in enumerate(talib.BBANDS(closes, period, 2.0, 2.0, talib.MA_Type.SMA)):
        close_enough(ours[:, column], reference, "BBANDS", scale * 1e-12)
