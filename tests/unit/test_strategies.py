"""Strategies: the interface and registry, parameter validation, hand-worked momentum cases, parity."""

from __future__ import annotations

import csv
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.paths import CANDLES
from trading.strategies import REGISTRY, Candle, Param, Strategy, build_strategy, parse_spec, strategy_from_spec
from trading.strategies.momentum import Momentum

FILES = sorted(CANDLES.glob("*.csv"))


def load(path: Path) -> list[Candle]:
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        next(rows)
        return [Candle(int(t), float(o), float(h), float(lo), float(c), float(v)) for t, o, h, lo, c, v in rows]


def candles_of(closes, volumes=None) -> list[Candle]:
    volumes = volumes or [100.0] * len(closes)
    return [
        Candle(i * 60_000, c, c * 1.001, c * 0.999, c, v) for i, (c, v) in enumerate(zip(closes, volumes, strict=True))
    ]


def emitted(strategy: Strategy, candles: list[Candle]) -> dict[int, object]:
    """{index: signal} for every candle that produced one."""
    out = {}
    for i, candle in enumerate(candles):
        signal = strategy.on_candle(candle)
        if signal is not None:
            out[i] = signal
    return out


# --- registry and parameters -------------------------------------------------------------------------------


def test_every_module_in_the_package_is_registered_by_name():
    package = Path(__file__).resolve().parents[2] / "trading" / "strategies"
    modules = {p.stem for p in package.glob("*.py")} - {"__init__", "base"}
    registered = {cls.__module__.rsplit(".", 1)[-1] for cls in REGISTRY.values()}
    assert modules <= registered
    assert REGISTRY["momentum"] is Momentum and "sma_cross" in REGISTRY


def test_defining_a_strategy_registers_it():
    class Always(Strategy):
        name = "test_always_buy"
        params = {"n": Param(1, 1, 5)}
        warmup = 1

        def on_candle(self, candle):
            return None

    try:
        assert build_strategy("test_always_buy", n=3).values == {"n": 3}
        assert strategy_from_spec("test_always_buy:n=2").values == {"n": 2}
    finally:
        REGISTRY.pop("test_always_buy")


def test_two_strategies_cannot_share_a_name():
    with pytest.raises(TypeError, match="strategy name 'momentum' is used by both"):

        class Impostor(Strategy):
            name = "momentum"

    assert REGISTRY["momentum"] is Momentum


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown strategy 'nope'; available: .*momentum.*sma_cross"):
        build_strategy("nope")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"ema_fast": 500}, "momentum: parameter ema_fast=500 is out of range (2–200)"),
        ({"rsi_max": 101}, "momentum: parameter rsi_max=101 is out of range (0–100)"),
        ({"volume_spike": 0.5}, "momentum: parameter volume_spike=0.5 is out of range (1–50)"),
        ({"trend_period": 1}, "momentum: parameter trend_period=1 is out of range (2–1000)"),
        ({"ema_slow": 12.5}, "momentum: parameter ema_slow=12.5 must be a whole number (integer 3–500, default 26)"),
        ({"rsi_period": "fourteen"}, "momentum: parameter rsi_period='fourteen' is not a number"),
        ({"rsi_min": float("nan")}, "momentum: parameter rsi_min=nan is not a finite number"),
        ({"ema_fast": 30, "ema_slow": 26}, "momentum: parameter ema_fast=30 must be below ema_slow=26 (allowed: 2–25)"),
        ({"rsi_min": 80, "rsi_max": 70}, "momentum: parameter rsi_min=80 must not exceed rsi_max=70 (allowed: 0–70)"),
        ({"colour": 3}, "momentum: unknown parameter(s) colour"),
    ],
)
def test_bad_parameters_name_the_parameter_and_its_range(params, message):
    with pytest.raises(ValueError) as error:
        build_strategy("momentum", **params)
    assert message in str(error.value)


def test_a_spec_carries_parameters():
    strategy = strategy_from_spec(" momentum : ema_fast=9, ema_slow=21,volume_spike=2.5 ")
    assert strategy.values["ema_fast"] == 9 and strategy.values["ema_slow"] == 21
    assert strategy.values["volume_spike"] == 2.5 and strategy.values["rsi_period"] == 14
    assert parse_spec("sma_cross") == ("sma_cross", {})
    for bad in ("momentum:ema_fast", "momentum:=3", "momentum:ema_fast=9,ema_fast=10"):
        with pytest.raises(ValueError, match="strategy spec"):
            parse_spec(bad)
    # The key names everything that changes the computation (the live cache is keyed by it).
    assert strategy.key != strategy_from_spec("momentum").key
    assert strategy_from_spec("momentum:ema_fast=12").key == strategy_from_spec("momentum").key


def test_defaults_and_warmup():
    strategy = build_strategy("momentum")
    assert strategy.values["ema_fast"] == 12 and strategy.values["ema_slow"] == 26
    assert strategy.warmup == 50  # the trend SMA50 is the longest
    assert build_strategy("momentum", trend_period=10, volume_period=30).warmup == 31
    assert build_strategy("momentum", trend_period=10).warmup == 27
    assert build_strategy("sma_cross").warmup == 21


# --- hand-worked momentum cases ----------------------------------------------------------------------------

SMALL = {"ema_fast": 3, "ema_slow": 5, "rsi_period": 2, "rsi_min": 0, "rsi_max": 100, "volume_period": 2}


def test_hand_worked_cross_exactly_at_candle_6_and_the_reversal_at_7():
    """EMA3/EMA5 by hand (k = 1/2 and 1/3), closes 10 10 10 10 10 9 12 8:

    index 4: EMA3 = 10, EMA5 = 10 (seed = mean of five 10s)         diff 0   (not above)
    index 5: EMA3 = 10 + (9 − 10)/2 = 9.5;  EMA5 = 10 + (9 − 10)/3 = 9.6667   diff < 0
    index 6: EMA3 = 9.5 + (12 − 9.5)/2 = 10.75;  EMA5 = 9.6667 + (12 − 9.6667)/3 = 10.4444   → crosses above
    index 7: EMA3 = 10.75 + (8 − 10.75)/2 = 9.375;  EMA5 = 10.4444 + (8 − 10.4444)/3 = 9.6296  → crosses below
    RSI2 (Wilder): changes 0 0 0 0 −1 +3 −4; seed gain = loss = 0; then
      index 5: loss = (0 + 1)/2 = 0.5;  index 6: gain = 3/2 = 1.5, loss = 0.5/2 = 0.25 → RSI = 150/1.75 = 85.714
      index 7: gain = 1.5/2 = 0.75, loss = (0.25 + 4)/2 = 2.125 → RSI = 75/2.875 = 26.087
    Volume: 300 at index 6 against the previous two (100, 100) → 3.0×; index 7: 100 against (100, 300) → 0.5×.
    SMA2 trend at index 6: (9 + 12)/2 = 10.5 < 12.
    BUY confidence = 0.4 + 0.2 × (1 − |85.714 − 50|/50) + 0.25 × min(1, 3/1.5) + 0.15 × 1 = 0.85714
    SELL confidence = 0.5 + 0.3 × (50 − 26.087)/25 + 0.2 × (0.5/1.5) = 0.85362
    """
    strategy = build_strategy("momentum", **SMALL, trend_period=2)
    assert strategy.warmup == 6
    candles = candles_of([10, 10, 10, 10, 10, 9, 12, 8], [100, 100, 100, 100, 100, 100, 300, 100])
    signals = emitted(strategy, candles)
    assert sorted(signals) == [6, 7]
    buy, sell = signals[6], signals[7]
    assert buy.side == "BUY" and buy.timestamp == 6 * 60_000 and buy.price == 12
    assert (
        buy.reason == "EMA3 crossed above EMA5 (10.75 > 10.444444); RSI 85.7; volume 3.0× avg; close 12 above SMA2 10.5"
    )
    assert buy.confidence == 0.8571
    assert buy.components["ema_fast"] == 10.75 and buy.components["ema_slow"] == pytest.approx(94 / 9, rel=1e-15)
    assert buy.components["rsi"] == pytest.approx(600 / 7, rel=1e-14)
    assert buy.components["volume_ratio"] == 3.0 and buy.components["trend_sma"] == 10.5
    assert sell.side == "SELL"
    assert sell.reason == "EMA3 crossed below EMA5 (9.375 < 9.6296296); RSI 26.1; volume 0.5× avg; momentum reversed"
    assert sell.confidence == 0.8536


def test_a_signal_on_the_warmup_candle_itself_but_never_before():
    """Closes 10 10 10 10 9 12: EMA3 9.5 < EMA5 9.8 at index 4, 10.75 > 10.5333 at index 5 = candle #6 = warmup."""
    candles = candles_of([10, 10, 10, 10, 9, 12])
    assert sorted(emitted(build_strategy("momentum", **SMALL, trend_period=2), candles)) == [5]
    # One more candle of warm-up (trend SMA7) and the same cross falls inside it: no signal.
    late = build_strategy("momentum", **SMALL, trend_period=7)
    assert late.warmup == 7 and emitted(late, candles) == {}


def crafted_closes() -> list[float]:
    """28 rising closes, 14 falling (a bearish cross at index 39, inside the 50-candle warm-up), then a
    zig-zag climb: EMA12 crosses above EMA26 exactly at index 57 with RSI 62 and the close above SMA50."""
    closes = [100 + 0.5 * i for i in range(28)]
    closes += [closes[-1] - 0.8 * (i + 1) for i in range(14)]
    base = closes[-1]
    closes += [base + 0.3 * (i + 1) + (0.2 if i % 2 else -0.2) for i in range(40)]
    return closes


CROSS = 57
talib = pytest.importorskip("talib")


def test_crafted_series_crosses_exactly_at_candle_57_and_not_before():
    closes = np.array(crafted_closes())
    volumes = [100.0] * len(closes)
    volumes[CROSS] = 230.0
    # Independent check with TA-Lib: the EMA difference changes sign only at 39 (down) and 57 (up).
    above = talib.EMA(closes, 12) - talib.EMA(closes, 26) > 0
    changes = [i for i in range(26, len(closes)) if above[i] != above[i - 1]]
    assert changes == [39, CROSS]
    strategy = build_strategy("momentum")
    signals = emitted(strategy, candles_of(closes.tolist(), volumes))
    assert list(signals) == [CROSS]  # the bearish cross at 39 is inside the warm-up (50): no SELL
    signal = signals[CROSS]
    assert signal.side == "BUY" and signal.price == closes[CROSS]

    # The reason's numbers are the indicators' (TA-Lib as the reference).
    match = re.fullmatch(
        r"EMA12 crossed above EMA26 \((\S+) > (\S+)\); RSI (\S+); volume (\S+)× avg; close (\S+) above SMA50 (\S+)",
        signal.reason,
    )
    assert match, signal.reason
    fast, slow, rsi, ratio, close, trend = match.groups()
    # Printed to 8 significant digits (RSI to one decimal): exactly TA-Lib's values at that precision.
    assert fast == f"{talib.EMA(closes, 12)[CROSS]:.8g}" and slow == f"{talib.EMA(closes, 26)[CROSS]:.8g}"
    assert rsi == f"{talib.RSI(closes, 14)[CROSS]:.1f}" == "62.0"
    assert trend == f"{talib.SMA(closes, 50)[CROSS]:.8g}"
    assert ratio == "2.3" and float(close) == closes[CROSS]
    components = signal.components
    assert components["ema_fast"] == pytest.approx(talib.EMA(closes, 12)[CROSS], rel=1e-12)
    assert components["rsi"] == pytest.approx(talib.RSI(closes, 14)[CROSS], rel=1e-12)
    assert components["volume_avg"] == 100.0 and components["volume_ratio"] == 2.3
    # confidence = 0.40 + 0.20 × rsi_score + 0.25 × volume_score + 0.15 × trend_score, from TA-Lib's numbers
    rsi_score = 1 - abs(talib.RSI(closes, 14)[CROSS] - 55) / 15  # band 40–70
    trend_score = (closes[CROSS] / talib.SMA(closes, 50)[CROSS] - 1) / 0.01
    assert signal.confidence == round(0.40 + 0.20 * rsi_score + 0.25 * 1.0 + 0.15 * trend_score, 4) == 0.777


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"rsi_max": 60}, "RSI 62 above the band"),
        ({"rsi_min": 65}, "RSI 62 below the band"),
        ({"trend_period": 40}, "close below SMA40"),
        ({"require_volume": 1, "volume_spike": 2.5}, "volume 2.3× is no 2.5× spike"),
    ],
)
def test_each_gate_can_block_the_crafted_buy(overrides, why):
    volumes = [100.0] * len(crafted_closes())
    volumes[CROSS] = 230.0
    candles = candles_of(crafted_closes(), volumes)
    assert list(emitted(build_strategy("momentum", require_volume=1, volume_spike=2.0), candles)) == [CROSS]
    assert CROSS not in emitted(build_strategy("momentum", **overrides), candles), why


# --- real data: bounds, warm-up, parity ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=FILES, ids=[p.stem for p in FILES])
def series(request) -> list[Candle]:
    return load(request.param)


@pytest.mark.shared_data
def test_momentum_on_real_candles(series):
    strategy = build_strategy("momentum")
    signals = emitted(strategy, series)
    assert signals, "the momentum mix should fire somewhere on every file"
    assert min(signals) >= strategy.warmup - 1
    sides = [s.side for s in signals.values()]
    assert "BUY" in sides and "SELL" in sides
    for signal in signals.values():
        assert 0.0 <= signal.confidence <= 1.0
        c = signal.components
        fast, slow = (f"{c['ema_fast']:.8g}", f"{c['ema_slow']:.8g}")
        assert f"({fast} {'>' if signal.side == 'BUY' else '<'} {slow}); RSI {c['rsi']:.1f}" in signal.reason
        assert (c["ema_fast"] > c["ema_slow"]) == (signal.side == "BUY")
        if signal.side == "BUY":
            assert 40 <= c["rsi"] <= 70 and c["close"] > c["trend_sma"]


@pytest.mark.shared_data
def test_a_restored_strategy_decides_exactly_like_an_uninterrupted_one(series):
    """The live path caches pickled strategies between candles; that must not change a single signal."""
    straight = build_strategy("momentum").run(series)
    resumed, out = build_strategy("momentum"), []
    for i, candle in enumerate(series):
        if i % 37 == 0:
            resumed = pickle.loads(pickle.dumps(resumed))
        signal = resumed.on_candle(candle)
        if signal is not None:
            out.append(signal)
    assert out == straight


def test_sma_cross_still_crosses_where_the_pipeline_expects():
    from tests.support import series as crossing

    candles = candles_of(crossing.crossing_prices())
    assert list(emitted(build_strategy("sma_cross"), candles)) == [crossing.CROSS_INDEX]


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(st.floats(min_value=-0.03, max_value=0.03), min_size=5, max_size=160),
    fast=st.integers(2, 8),
    gap=st.integers(1, 10),
    rsi_period=st.integers(2, 20),
    volume_period=st.integers(2, 30),
    trend_period=st.integers(2, 60),
)
def test_never_a_signal_before_the_warmup_candle(steps, fast, gap, rsi_period, volume_period, trend_period):
    closes = list(np.cumprod([1 + s for s in steps]) * 50)
    volumes = [100.0 + 50 * ((i * 7) % 5) for i in range(len(closes))]
    strategy = build_strategy(
        "momentum",
        ema_fast=fast,
        ema_slow=fast + gap,
        rsi_period=rsi_period,
        rsi_min=0,
        rsi_max=100,
        volume_period=volume_period,
        trend_period=trend_period,
    )
    signals = emitted(strategy, candles_of(closes, volumes))
    assert all(index >= strategy.warmup - 1 for index in signals)
    assert all(0 <= s.confidence <= 1 for s in signals.values())
