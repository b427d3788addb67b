"""The vectorised candle loader (marketdata/candle_files.py) against the row-by-row validator it replaces:
the same candles accepted (the same Decimals, to the exponent), every bad row refused with the same reason."""

from __future__ import annotations

import heapq
import io
from collections import Counter
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata import candle_files
from marketdata.validation import (
    CandleRow,
    Rejection,
    interval_ms,
    off_grid_hint,
    order_verdicts,
    parse_file_name,
    validate_lines,
)
from tests.support.paths import CANDLES
from trading.backtest import BacktestInputError, Bar, read_bars
from trading.strategies import Candle

SHARED = sorted(CANDLES.glob("*.csv"))
FIELDS = ("timestamp", "open", "high", "low", "close", "volume")


def row_by_row(data: bytes) -> tuple[list[CandleRow], Counter]:
    """What the replay and the old backtest reader make of a file: a text-mode read, validate_lines."""
    rows, rejected = [], Counter()
    for item in validate_lines(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace")):
        if isinstance(item, Rejection):
            rejected[item.reason] += 1
        else:
            rows.append(item)
    return rows, rejected


def vectorised(data: bytes) -> tuple[list[CandleRow], Counter, list[Candle]]:
    """parse_csv's rows of the format's rules alone, as ``row_by_row`` (the grid: ``test_times_off_the_grid…``)."""
    loaded = candle_files.parse_csv(data, "ETH_BTC", "5m", on_grid=False)
    bars = list(candle_files.iter_merged([loaded], Bar, Candle))
    return [bar.row for bar in bars], loaded.rejected, [bar.candle for bar in bars]


def exact(row: CandleRow) -> tuple:
    """Equal Decimals can differ in exponent (0.10 and 0.1): compare the digits too. A loaded row is a CandleRow
    (a ``TextRow``, which makes each Decimal from the file's text when it is first read)."""
    return isinstance(row, CandleRow), tuple((type(getattr(row, f)), str(getattr(row, f))) for f in FIELDS)


def assert_same(data: bytes) -> None:
    want_rows, want_rejected = row_by_row(data)
    rows, rejected, candles = vectorised(data)
    assert +rejected == +want_rejected
    assert [exact(r) for r in rows] == [exact(r) for r in want_rows]
    assert candles == [Candle(r.timestamp, *(float(getattr(r, f)) for f in FIELDS[1:])) for r in want_rows]


@pytest.mark.shared_data
def test_shared_files_give_the_same_merged_bars_and_rejections_as_the_row_by_row_reader():
    def old_bars(path: Path, rejected: Counter):
        symbol, interval = parse_file_name(path)
        with path.open(encoding="utf-8", errors="replace") as handle:
            for item in validate_lines(handle):
                if isinstance(item, Rejection):
                    rejected[item.reason] += 1
                else:
                    floats = (float(getattr(item, f)) for f in FIELDS[1:])
                    known = item.timestamp + interval_ms(interval)
                    yield Bar(symbol, interval, item, Candle(item.timestamp, *floats), known)

    want_rejected: Counter = Counter()
    streams = [old_bars(path, want_rejected) for path in SHARED]
    want = list(heapq.merge(*streams, key=lambda bar: (bar.known, bar.symbol, bar.interval)))
    rejected: dict[str, int] = {}
    bars = list(read_bars([str(path) for path in SHARED], rejected))
    assert len(bars) == len(want) > 40_000
    assert bars == want
    assert [exact(b.row) for b in bars] == [exact(b.row) for b in want]
    assert all(type(b) is Bar and type(b.candle) is Candle for b in bars)
    assert rejected == dict(want_rejected)


CRAFTED = b"""timestamp_ms,open,high,low,close,volume
1000,0.1,0.2,0.05,0.15,10
1000,0.1,0.2,0.05,0.15,10
900,0.1,0.2,0.05,0.15,10
2000,0.1,0.2,0.05,0.15
2000,0.1,0.2,0.05,0.15,10,1
2000,abc,0.2,0.05,0.15,10
2000,nan,0.2,0.05,0.15,10
2000,0.1,Infinity,0.05,0.15,10
2000.5,0.1,0.2,0.05,0.15,10
-5,0.1,0.2,0.05,0.15,10
2000,1e18,1e18,0.05,0.15,10
2000,0,0.2,0.05,0.15,10
2000,0.1,0.2,0.0000000000001,0.15,10
2000,-0.1,0.2,0.05,0.15,10
2000,0.1,0.04,0.05,0.15,10
2000,0.3,0.2,0.05,0.15,10
2000,0.1,0.2,0.05,0.25,10
2000,0.1,0.2,0.05,0.15,-1
2000,0.1,0.2,0.05,0.15,10

3000 , 0.1 ,0.2,0.05,0.15,10
\t
4000,5.33e-05,6e-5,5.1E-05,5.2e-05,1e-00
5000,1.0000000000001,1.0000000000002,1,1.00000000000015,7.1234567890123456
6000,+0.1,0.2,0.05,0.15,1_000
7000,12345678901234567,12345678901234568,12345678901234566,12345678901234567,1
8000,4096.000000000001,4096.000000000001,4096,4096.000000000001,1
9000,4096.000000000001,4096.000000000001,4096.000000000002,4096.000000000001,1
10000,5000.5,5000.5,5000.5,5000.5,0
11000,5.,5.e-3,5.e-3,5.,1
12000,1e-12,1e-12,1e-12,1e-12,1e-13
13000,0.1,0.2,0.05,0.15,1e-012
14000,1.5e+0,2,1,1.5,1
15000,1.5E2,200,100,150,1
1.6e4,0.1,0.2,0.05,0.15,10
17000,.5,0.6,0.4,0.5,1
18000,0.5,0.6,0.4,0.5,
18000\xc2\xa0,0.5,0.6,0.4,0.5,1
\xc2\xa0
19000,0.5,0.6,0.4,0.5,1\xff
20000,0.5,0.6,0.4,0.5,\xd9\xa1
21000,0.1,0.2,0.05,0.15,10\r22000,0.1,0.2,0.05,0.15,10\r\n23000,0.1,0.2,0.05,0.15,10
24000,0.1,0.2,0.05,0.15,10
24500,1,10000000000000000,0.0000000000015,1,1
99999999999999999999,0.1,0.2,0.05,0.15,10
999999999999999999,0.1,0.2,0.05,0.15,10
25000,0.1,0.2,0.05,0.15,10
100000000000000000000,0.1,0.2,0.05,0.15,10
26000,0.1,0.2,0.05,0.15,10"""


def test_crafted_bad_rows_are_refused_with_todays_reasons_and_the_rest_accepted_alike():
    want_rows, want_rejected = row_by_row(CRAFTED)
    assert len(set(want_rejected)) == 10, "every reason is in the file"
    assert_same(CRAFTED)
    rows, rejected, _ = vectorised(CRAFTED)
    assert max(row.timestamp for row in rows) == 26000  # 10**20 and its like: after the year 9999, bad_timestamp
    assert rejected["bad_timestamp"] >= 3  # 99999999999999999999, 999999999999999999 (plain), 10**20 …
    assert rejected["timestamp_going_back"] == 1  # … and the rows after them are not "going back" from them
    wide = next(row for row in rows if row.timestamp == 24500)  # 17 + 12 digits once quantized: no longer a crash
    assert (wide.high, wide.low) == (Decimal("1E16"), Decimal("2E-12"))


SAME_FLOAT = [
    "0.1",
    "0.10",
    "00.1",
    "0.100000000000",
    "1e-1",
    "1.0e-1",
    "10e-2",
    "0.1",
    "1E-1",
    "9007199254740992",
    "9007199254740993",
    "9007199254740992.0",
    "2251799813685248",
    "2251799813685249",
    "4503599627.370496",
    "4503599627.370497",
    "0.000000000001",
    "1e-12",
    "0.0000000000010",
    "123",
    "123.0",
    "123.000",
    "0123",
]


def test_texts_of_one_float_keep_their_own_decimal():
    """Texts of one float but of other digits after the point (0.1, 0.10, 1e-1), or other integers beyond 2**53
    (…992, …993), are each their own Decimal, to the exponent, as the row-by-row reader makes them."""
    lines = ["timestamp_ms,open,high,low,close,volume"]
    lines += [f"{n},{t},{t},{t},{t},1" for n, t in enumerate(SAME_FLOAT, 1)]
    lines += [f"{n},{t},{u},{t},{t},1" for n, (t, u) in enumerate(pairwise(SAME_FLOAT), 100)]
    assert_same("\n".join(lines).encode())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n\n",
        b"timestamp_ms,open,high,low,close,volume\n",
        b"timestamp,open\n1,1,1,1,1,1",
        b"\xef\xbb\xbftimestamp_ms,open,high,low,close,volume\n1,1,1,1,1,1\n",
        b"\n\ntimestamp_ms,open,high,low,close,volume\n1,1,1,1,1,1\n",
        b"1,1,1,1,1,1\n1,1,1,1,1,1\r\n\r\n2,1,1,1,1,1\r",
        b"TIMESTAMP_MS , OPEN,high,low,close,volume\n5,2,3,1,2,0\n4,2,3,1,2,0\n6,2,3,1,2,0",
    ],
)
def test_edges_of_the_file_format(data):
    assert_same(data)


STEP = 300_000  # 5m


def candle_line(n: int) -> str:
    return f"{n * STEP},1,2,0.5,1.5,10"


@pytest.mark.parametrize("misplaced_at", [0, 2, 6])
def test_a_misplaced_row_is_refused_alone_and_the_valid_rows_after_it_are_kept(tmp_path, misplaced_at):
    """A row of the future among the first rows (a reviewer's file): it is refused as out of order, and the valid
    rows after it, which reading in order took for going back behind it, are kept. A duplicate and a row going back
    are refused with today's reasons. (Right before the last row, a row of the future is not told from a last row
    going back: of the two, the earlier is kept, as reading in order keeps it.)"""
    lines = [candle_line(n) for n in range(1, 11)]
    lines.insert(misplaced_at, candle_line(50))  # ahead of every row after it
    lines.insert(-3, lines[-4])  # the row before it again: a duplicate
    lines.append(candle_line(3))  # going back
    path = tmp_path / "AAA_USDT-5m.csv"
    path.write_text("timestamp_ms,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    rejected: dict[str, int] = {}
    bars = list(read_bars([str(path)], rejected))
    assert [bar.row.timestamp for bar in bars] == [n * STEP for n in range(1, 11)]
    assert rejected == {"timestamp_out_of_order": 1, "duplicate_timestamp": 1, "timestamp_going_back": 1}
    assert_same(path.read_bytes())  # the row-by-row validator (the replay's) judges the same


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=12))
def test_the_order_rule_keeps_the_most_rows_in_order(stamps):
    """Kept: strictly rising, and as many as any rising selection has (checked by brute force); every refused
    row's reason compares it with the latest row kept before it."""
    verdicts = order_verdicts(stamps)
    kept = [t for t, verdict in zip(stamps, verdicts, strict=True) if verdict is None]
    assert all(a < b for a, b in zip(kept, kept[1:], strict=False))
    longest = [0] * len(stamps)  # the longest rising selection ending at each row
    for i, t in enumerate(stamps):
        longest[i] = 1 + max((longest[j] for j in range(i) if stamps[j] < t), default=0)
    assert len(kept) == max(longest, default=0)
    latest = None
    for t, verdict in zip(stamps, verdicts, strict=True):
        if verdict is None:
            latest = t
        else:
            expected = "duplicate_timestamp" if t == latest else "timestamp_going_back"
            assert verdict == (expected if latest is not None and t <= latest else "timestamp_out_of_order")


LINE = st.text(alphabet="0123456789.,eE-+ _\tx\r", max_size=40)
NUMBER = st.one_of(
    st.decimals(min_value=0, max_value=10**17, allow_nan=False, allow_infinity=False, places=14).map(str),
    st.integers(0, 10**19).map(str),
    st.sampled_from(["0", "1e-5", "5.e-3", "4096", "4096.000000000001", "1E-12", "1e-13", "-1", "nan", ""]),
    st.floats(0, 1e6, allow_nan=False).map(repr),
)
ROW = st.lists(NUMBER, min_size=5, max_size=7).map(",".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ROW, ROW, LINE), max_size=25), st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_file_is_judged_as_the_row_by_row_validator_judges_it(lines, newline):
    assert_same(newline.join(lines).encode())


PRICE_PART = st.tuples(
    st.text("0123456789", min_size=1, max_size=16),
    st.text("0123456789", max_size=12),
    st.integers(0, 12),
    st.booleans(),
)
NEAR_2_53 = ["9007199254740991", "9007199254740992", "9007199254740993", "9999999999999999", "1e-12", "0.000000000001"]
NEAR_2_53 += ["123456789012345e-12", "1234567890123456.123456789012", "900719925474099.3", "90071992547409.93e-1"]


def price_text(whole: str, decimals: str, k: int, exponent: bool) -> str:
    """A number of PLAIN_ROW's shape: at most 16 digits before the point, at most 12 decimals with the ``e-k``."""
    mantissa = f"{whole}.{decimals}" if decimals else whole
    return f"{mantissa}e-{min(k, 12 - len(decimals))}" if exponent else mantissa


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(PRICE_PART.map(lambda part: price_text(*part)), st.sampled_from(NEAR_2_53)), min_size=6))
def test_plain_prices_are_the_floats_float_makes_of_them(texts):
    """Every shape a plain row allows (up to 16 digits before the point, 12 decimals with the ``e-k``; around
    2**53, where floats stop holding every integer): the candle's float is ``float(text)`` and the row's lazy
    Decimal is ``Decimal(text)`` (assert_same). The first rows mix the numbers, so high ≥ low is not asked of
    them; the last ones hold one number five times and are accepted above the price floor."""
    rows = [f"{1000 * n},{','.join(texts[n : n + 5])}" for n in range(len(texts) - 4)]
    data = "\n".join(
        [
            "timestamp_ms,open,high,low,close,volume",
            *rows,
            *(f"{n},{t},{t},{t},{t},1" for n, t in enumerate(texts, 10**7)),
        ]
    ).encode()
    assert_same(data)
    loaded = candle_files.parse_csv(data, "ETH_BTC", "5m", on_grid=False)
    accepted = dict(zip(loaded.timestamps.tolist(), loaded.values[:, 0].tolist(), strict=True))
    for n, text in enumerate(texts, 10**7):
        if Decimal(text) >= Decimal("5e-13"):  # the price floor: the row is accepted
            assert accepted[n] == float(text), text


def freqtrade_table(path: Path, unit: str):
    """A Freqtrade candle table (what its datahandler stores) from one of our CSV files."""
    pa = pytest.importorskip("pyarrow")
    rows = [line.split(",") for line in path.read_text().splitlines()[1:] if line.strip()]
    per_ms = {"ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    columns = {"date": pa.array([int(r[0]) * per_ms for r in rows], pa.timestamp(unit, tz="UTC"))}
    for index, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        columns[name] = pa.array([float(r[index]) for r in rows], pa.float64())
    return pa.table(columns)


@pytest.mark.shared_data
@pytest.mark.parametrize(("suffix", "unit"), [("feather", "ns"), ("parquet", "ms"), ("feather", "us")])
def test_freqtrade_files_read_like_the_csv_they_came_from(tmp_path, suffix, unit):
    pa = pytest.importorskip("pyarrow")
    source = CANDLES / "ETH_BTC-5m.csv"
    table = freqtrade_table(source, unit)
    target = tmp_path / f"ETH_BTC-5m.{suffix}"
    if suffix == "feather":
        from pyarrow import feather

        feather.write_feather(table, target)
    else:
        from pyarrow import parquet

        parquet.write_table(table, target)
    assert pa is not None
    rejected: dict[str, int] = {}
    bars = list(read_bars([str(target)], rejected))
    want = list(read_bars([str(source)]))
    assert rejected == {}
    assert [(b.symbol, b.interval, b.row, b.candle) for b in bars] == [
        (b.symbol, b.interval, b.row, b.candle) for b in want
    ]


def test_freqtrade_rows_go_through_the_same_rules(tmp_path):
    pa = pytest.importorskip("pyarrow")
    from pyarrow import feather

    table = pa.table(
        {
            "date": pa.array([300_000, 300_000, 600_000, 900_000, 1_200_000], pa.timestamp("ms", tz="UTC")),
            "open": [1.0, 1.0, float("nan"), 2.0, 1e-05],
            "high": [2.0, 2.0, 2.0, 1.0, 2e-05],
            "low": [0.5, 0.5, 0.5, 1.5, 1e-05],
            "close": [1.5, 1.5, 1.5, 1.5, 1.5e-05],
            "volume": [3.0, 3.0, 3.0, 3.0, 0.0],
        }
    )
    feather.write_feather(table, tmp_path / "ABC_BTC-5m.feather")
    rejected: dict[str, int] = {}
    bars = list(read_bars([str(tmp_path / "ABC_BTC-5m.feather")], rejected))
    assert rejected == {"duplicate_timestamp": 1, "non_numeric": 1, "high_below_low": 1}
    assert [b.row for b in bars] == [
        CandleRow(300_000, Decimal("1.0"), Decimal("2.0"), Decimal("0.5"), Decimal("1.5"), Decimal("3.0")),
        CandleRow(1_200_000, Decimal("1e-05"), Decimal("2e-05"), Decimal("1e-05"), Decimal("1.5e-05"), Decimal(0)),
    ]


def test_input_errors_keep_their_messages(tmp_path):
    (tmp_path / "ETH_BTC-5m.csv").write_text("")
    (tmp_path / "BAD_BTC-5m.parquet").write_text("timestamp_ms,open,high,low,close,volume\n")
    for name, message in [
        ("prices.csv", "name it SYMBOL-INTERVAL.csv"),
        ("ETH_BTC-5m.csv", "the file is empty"),
        ("XRP_BTC-5m.feather", "no such file"),
        ("BAD_BTC-5m.parquet", "BAD_BTC-5m.parquet: "),
    ]:
        with pytest.raises(BacktestInputError, match=message):
            read_bars([str(tmp_path / name)])


def test_times_off_the_interval_grid_are_refused_alike_by_both_readers():
    # A 1m file: 1700002800000 opens on a minute (28,333,380 minutes); 1700002870000 is 10 s past one; 1700002800
    # is a time in seconds (not a whole minute in ms either). Each off-grid row is refused with its reason, counted
    # like any bad row, and the order rule judges the rest.
    minute = 60_000
    lines = [
        "timestamp_ms,open,high,low,close,volume",
        "1700002800000,1,1,1,1,1",
        "1700002870000,1,1,1,1,1",
        f"{1700002800000 + minute},1,1,1,1,1",
        "1700002800,1,1,1,1,1",
        f"{1700002800000 + 2 * minute},1,1,1,1,1",
    ]
    data = ("\n".join(lines) + "\n").encode()
    rows, rejected = [], Counter()
    for item in validate_lines(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"), "1m"):
        if isinstance(item, Rejection):
            rejected[item.reason] += 1
        else:
            rows.append(item.timestamp)
    assert rows == [1700002800000 + i * minute for i in range(3)]
    assert rejected == {"timestamp_off_interval_grid": 2}
    loaded = candle_files.parse_csv(data, "AAA_USDT", "1m")
    assert loaded.timestamps.tolist() == rows and +loaded.rejected == rejected
    only_seconds = "\n".join(["timestamp_ms,open,high,low,close,volume", "1700002800,1,1,1,1,1"])
    assert (
        off_grid_hint(only_seconds.splitlines(), "1m")
        == "1700002800 is not a 1m open time in epoch ms: a time in seconds?"
    )


def test_built_rows_and_candles_are_the_frozen_classes():
    """``_builder``'s seam: bars are filled through a writable twin class, then handed out as the frozen classes
    themselves (equal to, hashed as and as read-only as rows and candles made the ordinary way)."""
    loaded = candle_files.parse_csv(SHARED[0].read_bytes(), "ETH_BTC", "5m")
    bar = next(candle_files.iter_merged([loaded], Bar, Candle))
    assert type(bar) is Bar and type(bar.row) is candle_files.TextRow and type(bar.candle) is Candle
    plain = Candle(*(getattr(bar.candle, name) for name in FIELDS))
    assert bar.candle == plain and hash(bar.candle) == hash(plain)
    assert bar.row == CandleRow(*(getattr(bar.row, name) for name in FIELDS))
    for frozen in (bar.row, bar.candle):
        with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
            frozen.close = 1
