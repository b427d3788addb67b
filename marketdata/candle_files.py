"""Reading candle files fast: whole columns at once with numpy, under exactly the row rules of
``marketdata.validation`` (the same candles accepted, every bad row refused with the same reason).

A CSV file's bytes are classified in numpy. A line made only of digits, points, ``e-`` exponents and five
commas, whose numbers have the shapes ``validation.PLAIN_ROW`` accepts (at most 16 digits before the point and
12 decimals in all), is *plain*: the checks left for such a row (price above zero, low ≤ open, close ≤ high) are
made on whole float columns, which decide them exactly (``_plain_reasons``). Every other line — the header, a
blank, a sign, a blank inside, NaN, a bad byte, too many digits — goes through ``validation.check_line`` one
by one, as before; real files have few. The order of timestamps (duplicate, going back, out of order) is then
judged over the whole file, as the row-by-row validator judges it (``validation.order_verdicts``).

Accepted rows keep their exact text, and a row handed out (``iter_merged``) is a ``TextRow``: a ``CandleRow`` whose
open and volume are Decimals made from that text when first read. Decimal only where money is booked: the
simulation reads every candle's close (its mark) and the high and low of the rows under a decision's spread, but
the open and volume only when an order fills, so most of those are never made.

Freqtrade's feather/parquet files (``ETH_BTC-5m.feather``: date, open, high, low, close, volume) are read with
pyarrow and turned into the CSV text of the same rows (``repr`` of each float: the shortest text that reads
back as that float), then read like a CSV: the same rules, the same reasons.
"""

from __future__ import annotations

import gc
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from pathlib import Path

import numpy as np

from .validation import (
    BAD_TIMESTAMP,
    HEADER,
    HIGH_BELOW_LOW,
    INTERVAL_MS,
    MAX_TIMESTAMP_MS,
    NON_POSITIVE_PRICE,
    OFF_GRID,
    OPEN_CLOSE_OUTSIDE_RANGE,
    CandleRow,
    check_line,
    interval_ms,
    is_header,
    order_verdicts,
)

FREQTRADE_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]{1,20}_[A-Z0-9]{1,20})-(?P<interval>[0-9]+[smhdwM])\.(?P<format>feather|parquet)$"
)
CHUNK = 8192  # rows built per step of iter_merged
EXACT_BELOW = 4096.0  # two values on the 1e-12 grid below 2**12 are never the same float (ulp ≤ 2**-40)
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")

# byte classes of a CSV line (the separators last, so ``>= COMMA`` finds them)
DIGIT, POINT, EXP, MINUS, OTHER, COMMA, NEWLINE = range(7)
_CLASS = np.full(256, OTHER, np.uint8)
_CLASS[ord("0") : ord("9") + 1] = DIGIT
_CLASS[ord(".")] = POINT
_CLASS[ord("e")] = _CLASS[ord("E")] = EXP
_CLASS[ord("-")] = MINUS
_CLASS[ord(",")] = COMMA
_CLASS[ord("\n")] = NEWLINE


@dataclass
class CandleFile:
    """One file's accepted candles in file order, and what was refused."""

    symbol: str
    interval: str
    timestamps: np.ndarray  # int64
    values: np.ndarray  # float64 (n, 5): open, high, low, close, volume as the strategy reads them
    texts: list[list[str]]  # 5 columns: each accepted plain row's exact text ("0" where checked one by one)
    checked_rows: dict[int, CandleRow]  # accepted rows checked one by one, by position
    rejected: Counter

    def __len__(self) -> int:
        return len(self.timestamps)


def freqtrade_file_name(path: str | Path) -> tuple[str, str] | None:
    """``ETH_BTC-5m.feather`` / ``.parquet`` (Freqtrade's spot files) → ("ETH_BTC", "5m"); None otherwise."""
    match = FREQTRADE_NAME.match(Path(path).name)
    return (match.group("symbol"), match.group("interval")) if match else None


def read_file(path: Path, symbol: str, interval: str) -> CandleFile:
    """A candle file (CSV, or Freqtrade's feather/parquet) validated like a replay."""
    if path.suffix in (".feather", ".parquet"):
        return parse_csv(freqtrade_csv(path), symbol, interval)
    return parse_csv(path.read_bytes(), symbol, interval)


def parse_csv(data: bytes, symbol: str, interval: str, *, on_grid: bool = True) -> CandleFile:
    """The rows of a CSV's bytes, exactly as ``validation.validate_lines`` judges the decoded lines (of
    ``interval``: every open time on its grid; ``on_grid`` False: the format's rules alone, as without one)."""
    if not data.strip(b"\r\n"):
        return CandleFile(symbol, interval, np.zeros(0, np.int64), np.zeros((0, 5)), [[]] * 5, {}, Counter())
    if b"\r" in data:  # universal newlines, as a text-mode file reads them
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, np.uint8)
    events = np.flatnonzero((buf - np.uint8(ord("0"))) > 9)  # every byte but a digit, in order
    kinds = _CLASS[buf[events]]
    is_sep = kinds >= COMMA  # every field ends at a comma or a newline
    # the events of each kind as index arrays (each used twice or more: a take costs half a boolean subscript)
    seps, others = np.flatnonzero(is_sep), np.flatnonzero(~is_sep)
    sep = events[seps]
    newline_at = np.flatnonzero(kinds[seps] == NEWLINE)  # each line's last separator, as an index into sep
    line_end = sep[newline_at]
    line_start = np.concatenate(([0], line_end[:-1] + 1))
    field_start = np.concatenate(([0], sep[:-1] + 1))
    special_field = np.cumsum(is_sep)[others]  # the field of each point, exponent, sign or other byte
    special = events[others], kinds[others], special_field

    plain = _plain_lines(buf, special, sep, newline_at, field_start)
    text = data.decode("latin-1")  # plain lines are ASCII; the others are decoded as UTF-8 below
    if len(plain) and plain[0] + len(plain) == len(line_end):  # the usual file: a header, then plain lines
        fields = text[line_start[plain[0]] : -1].replace("\n", ",").split(",")
    elif len(plain):
        lines = text.split("\n")
        fields = ",".join(map(lines.__getitem__, plain.tolist())).split(",")
    else:
        fields = []
    ts = np.fromiter(map(int, fields[::6]), np.int64, count=len(plain))  # at most 18 digits
    texts = [fields[column::6] for column in range(1, 6)]
    values = np.fromiter(map(float, chain.from_iterable(texts)), np.float64, count=len(plain) * 5)
    values = values.reshape(5, -1).T
    reasons, unsure = _plain_reasons(values)
    late = ts > MAX_TIMESTAMP_MS  # validation._check_plain judges the timestamp first
    reasons[late], unsure[late] = 4, False

    rejected: Counter = Counter()
    for code, count in enumerate(np.bincount(reasons[~unsure], minlength=5).tolist()):
        if code and count:
            rejected[_PLAIN_REASONS[code]] += count
    to_check = np.ones(len(line_end), bool)
    to_check[plain[~unsure]] = False  # every line but the decided plain ones
    checked = _check_one_by_one(data, line_start, line_end, np.flatnonzero(to_check), rejected)

    # the candidates in line order: plain rows first, then the checked ones, sorted by their line
    plain_good = np.flatnonzero((reasons == 0) & ~unsure)
    line_of = np.concatenate((plain[plain_good], np.fromiter(checked, np.int64, count=len(checked))))
    order = np.argsort(line_of, kind="stable")
    checked_ts = [row.timestamp for row in checked.values()]
    stamps = np.concatenate((ts[plain_good], np.array(checked_ts, np.int64)))[order]  # all ≤ MAX_TIMESTAMP_MS
    step = INTERVAL_MS.get(interval) if on_grid else None
    on_grid = stamps % step == 0 if step else np.ones(len(stamps), bool)  # an own check: before the order rule
    if bool(on_grid.all()):
        accepted = _in_order(stamps, rejected)
    else:
        rejected[OFF_GRID] += int((~on_grid).sum())
        accepted = np.zeros(len(stamps), bool)
        accepted[np.flatnonzero(on_grid)[_in_order(stamps[on_grid], rejected)]] = True

    take = order[accepted]  # positions among the candidates, in line order
    n_plain = len(plain_good)
    source = np.concatenate((plain_good, [len(values)]))[np.minimum(take, n_plain)]  # checked: a row of zeros
    rows_values = np.concatenate((values, np.zeros((1, 5))))[source]
    checked_list = list(checked.values())
    checked_rows = {}
    for position in np.flatnonzero(take >= n_plain).tolist():
        row = checked_list[take[position] - n_plain]
        checked_rows[position] = row
        rows_values[position] = [float(getattr(row, name)) for name in PRICE_COLUMNS]
    if not checked_rows and len(source) == len(values):
        columns = texts  # every plain row accepted (the usual file): no copy
    else:
        pick = source.tolist()
        columns = [list(map([*column, "0"].__getitem__, pick)) for column in texts]
    return CandleFile(symbol, interval, stamps[accepted], rows_values, columns, checked_rows, rejected)


def _check_one_by_one(data: bytes, line_start, line_end, lines: np.ndarray, rejected: Counter) -> dict[int, CandleRow]:
    """``validate_lines`` on the given lines but for the order of timestamps: the accepted rows by line index."""
    checked = {}
    for index in lines.tolist():
        line = data[line_start[index] : line_end[index]].decode("utf-8", "replace")
        if not line.strip() or (index == 0 and is_header(line.split(","))):
            continue  # blank lines and the header are skipped, not refused
        result = check_line(line)
        if isinstance(result, str):
            rejected[result] += 1
        else:
            checked[index] = result
    return checked


def _plain_lines(buf, special, sep, newline_at, field_start) -> np.ndarray:
    """The indices of the plain lines (``validation.PLAIN_ROW``'s shape).
    ``special``: the position, class and field of every byte that is neither a digit nor a separator."""
    n_fields = len(sep)
    at, kind, field = special
    length = sep - field_start
    line_of_field = np.cumsum(np.bincount(newline_at + 1, minlength=n_fields)[:n_fields])
    bad_lines = line_of_field[field[kind == OTHER]]
    points = np.flatnonzero(kind == POINT)
    n_point = np.bincount(field[points], minlength=n_fields)
    point = np.zeros(n_fields, np.int64)
    point[field[points]] = at[points]

    # a price: D{1,16} (. D{0,12})? — what every field of a usual file is; exponents are checked below
    int_digits = np.where(n_point == 1, point, sep) - field_start
    decimals = np.where(n_point == 1, sep - point - 1, 0)
    number = (n_point <= 1) & (int_digits >= 1) & (int_digits <= 16) & (decimals <= 12)
    # the timestamp: D{1,18}
    integer = (n_point == 0) & (length >= 1) & (length <= 18)
    rare = (kind == EXP) | (kind == MINUS)
    if rare.any():  # D{1,16} (. D*)? e - D{1,2}, the decimals and the exponent k ≤ 12 in all
        with_exponent = np.zeros(n_fields, bool)
        with_exponent[field[rare]] = True
        fields = np.flatnonzero(with_exponent)
        integer[fields] = False
        number[fields] = _exponent_numbers(buf, at, kind, field, fields, point, n_point, sep, field_start)

    six = np.diff(newline_at, prepend=-1) == 6
    six[bad_lines] = False
    candidates = np.flatnonzero(six)
    last = newline_at[candidates]
    ok = integer[last - 5] & number[last - 4] & number[last - 3] & number[last - 2] & number[last - 1] & number[last]
    return candidates[ok]


def _exponent_numbers(buf, at, kind, field, fields, point, n_point, sep, field_start) -> np.ndarray:
    """For the fields with an ``e``/``E`` or a ``-`` (sorted): whether each is a plain number with an exponent."""
    exp_of, minus_of = np.flatnonzero(kind == EXP), np.flatnonzero(kind == MINUS)
    exp_index, minus_index = np.searchsorted(fields, field[exp_of]), np.searchsorted(fields, field[minus_of])
    n_exp = np.bincount(exp_index, minlength=len(fields))
    n_minus = np.bincount(minus_index, minlength=len(fields))
    exp, minus = np.zeros(len(fields), np.int64), np.zeros(len(fields), np.int64)
    exp[exp_index], minus[minus_index] = at[exp_of], at[minus_of]
    point, end, start, n_point = point[fields], sep[fields], field_start[fields], n_point[fields]
    has_point = n_point == 1
    ok = (n_point <= 1) & (n_exp == 1) & (n_minus == 1) & (minus == exp + 1)
    int_digits = np.where(has_point, point, exp) - start
    ok &= (int_digits >= 1) & (int_digits <= 16) & (~has_point | (point < exp))
    exp_digits = end - minus - 1
    ok &= (exp_digits == 1) | (exp_digits == 2)
    first = buf[np.minimum(minus + 1, len(buf) - 1)].astype(np.int64) - ord("0")
    second = buf[np.minimum(minus + 2, len(buf) - 1)].astype(np.int64) - ord("0")
    k = np.where(exp_digits == 2, 10 * first + second, first)
    decimals = np.where(has_point, exp - point - 1, 0)
    return ok & (k <= 12) & (decimals + k <= 12)


_PLAIN_REASONS = {1: NON_POSITIVE_PRICE, 2: HIGH_BELOW_LOW, 3: OPEN_CLOSE_OUTSIDE_RANGE, 4: BAD_TIMESTAMP}


def _plain_reasons(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``validation._check_plain`` on float columns: a reason code per row (0 = fine) and the rows floats
    cannot decide. A plain value is on the 1e-12 grid and below 1e16; parsing to the nearest float keeps its
    order (a < b gives float(a) ≤ float(b)), so unequal floats decide a comparison, and so do equal floats below
    EXACT_BELOW (they are equal values). Only equal floats at or above it are unsure: those rows are checked
    one by one on their Decimals."""
    o, h, lo, c = values[:, 0], values[:, 1], values[:, 2], values[:, 3]
    reasons = np.zeros(len(values), np.int8)
    outside = (o < lo) | (o > h) | (c < lo) | (c > h)
    reasons[outside] = 3
    reasons[h < lo] = 2
    reasons[(o == 0) | (h == 0) | (lo == 0) | (c == 0)] = 1
    ties = (o == lo) | (o == h) | (c == lo) | (c == h) | (h == lo)
    unsure = ties & (np.maximum(np.maximum(o, h), np.maximum(lo, c)) >= EXACT_BELOW)
    return reasons, unsure


def _in_order(stamps: np.ndarray, rejected: Counter) -> np.ndarray:
    """Which candidates (in line order) the order rule accepts (``validation.order_verdicts``): all of them when
    the timestamps rise throughout (the usual file), else the most that do, each refused one counted by its reason."""
    if len(stamps) < 2 or bool(np.all(stamps[1:] > stamps[:-1])):
        return np.ones(len(stamps), bool)
    verdicts = order_verdicts(stamps.tolist())
    rejected.update(reason for reason in verdicts if reason is not None)
    return np.fromiter((reason is None for reason in verdicts), bool, count=len(verdicts))


def freqtrade_csv(path: Path) -> bytes:
    """A Freqtrade feather/parquet candle file as the CSV text of the same rows (open time in epoch ms)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if path.suffix == ".feather":
        from pyarrow import feather

        table = feather.read_table(path)
    else:
        from pyarrow import parquet

        table = parquet.read_table(path)
    missing = [name for name in ("date", *PRICE_COLUMNS) if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (Freqtrade's date, open, high, low, close, volume)")
    date = table["date"]
    if pa.types.is_timestamp(date.type):
        per_ms = {"s": Decimal("1e-3"), "ms": Decimal(1), "us": Decimal(1000), "ns": Decimal(1_000_000)}[date.type.unit]
        raw = pc.cast(date, pa.timestamp(date.type.unit)).cast(pa.int64()).to_pylist()
        stamps = ["" if t is None else format(Decimal(t) / per_ms, "f") for t in raw]
    else:
        stamps = ["" if t is None else str(t) for t in date.to_pylist()]
    columns = [map(repr, table[name].to_pylist()) for name in PRICE_COLUMNS]
    lines = [",".join(HEADER), *map(",".join, zip(stamps, *columns, strict=True))]
    return ("\n".join(lines) + "\n").encode()


class TextRow(CandleRow):
    """A ``CandleRow`` whose open and volume are Decimals made from the file's text when first read
    (the exact text, so the same Decimal to the exponent as the row-by-row validator makes). Equal to and hashed
    as the ``CandleRow`` of the same values (its repr names this class)."""

    __slots__ = ("_texts", "_at")  # the file's five text columns (shared) and this row's index in them

    def __getattr__(self, name: str) -> Decimal:  # only for a slot not set yet: a price not read so far
        try:
            column = _PRICE_INDEX[name]
            value = Decimal(self._texts[column][self._at])
        except (KeyError, AttributeError):  # not a price, or a TextRow made by __init__ (every price set)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None
        object.__setattr__(self, name, value)
        return value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CandleRow):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _FIELD_NAMES)

    __hash__ = CandleRow.__hash__


_FIELD_NAMES = ("timestamp", *PRICE_COLUMNS)
_PRICE_INDEX = {name: column for column, name in enumerate(PRICE_COLUMNS)}


def _builder(cls: type) -> type:
    """A subclass of the frozen slotted ``cls`` with the same layout whose attributes are set as any object's:
    its instances are filled by plain assignments (a slot store, some ten times cheaper than going through the
    frozen class's ``__setattr__`` or its slots' ``__set__``), then made ``cls`` by assigning ``__class__``
    (allowed: the layouts are the same). The only place a frozen row or candle is ever written."""
    builder = _BUILDERS.get(cls)
    if builder is None:
        namespace = {"__slots__": (), "__setattr__": object.__setattr__, "__delattr__": object.__delattr__}
        builder = _BUILDERS[cls] = type(f"_Building{cls.__name__}", (cls,), namespace)
    return builder


_BUILDERS: dict[type, type] = {}


def iter_merged(files: list[CandleFile], bar: type, candle: type) -> Iterator:
    """``bar(symbol, interval, row, candle, known)`` for every accepted row of the files, merged by (known,
    symbol, interval) — ties in file order, as ``heapq.merge`` gives — built ``CHUNK`` rows at a time. ``known`` is
    when the candle is known: its close, open time + interval (``validation.known_at``)."""
    return chain.from_iterable(_merged_chunks(files, bar, candle))


def _merged_chunks(files: list[CandleFile], bar: type, candle: type) -> Iterator[list]:
    """Lists of bars in merged order. Each file's part of a chunk is a run of its rows (the merge keeps each
    file's order), so it is built from slices of the file's columns; one permutation then interleaves them."""
    files = [f for f in files if len(f)]
    if not files:
        return
    sizes = [len(f) for f in files]
    keys = sorted({(f.symbol, f.interval) for f in files})
    rank = np.repeat([keys.index((f.symbol, f.interval)) for f in files], sizes)
    which = np.repeat(np.arange(len(files)), sizes)
    known = np.concatenate([f.timestamps + interval_ms(f.interval) for f in files])
    order = np.lexsort((np.arange(len(rank)), rank, known))
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # each file's first row in the global numbering
    done = np.zeros(len(files), np.int64)  # rows of each file handed out so far
    for start in range(0, len(order), CHUNK):
        index = order[start : start + CHUNK]
        file_of = which[index]
        counts = np.bincount(file_of, minlength=len(files))
        with _collector_paused():
            parts: list = []
            for number in np.flatnonzero(counts).tolist():
                low, high = int(done[number]), int(done[number] + counts[number])
                parts += _bars(files[number], low, high, bar, candle)
            # where each bar of the chunk sits in parts (the files' runs one after the other)
            run_start = np.cumsum(counts) - counts
            at = run_start[file_of] + index - first[file_of] - done[file_of]
            bars = list(map(parts.__getitem__, at.tolist()))
        done += counts
        yield bars


def _bars(file: CandleFile, low: int, high: int, bar: type, candle: type) -> list:
    """Rows low..high-1 of one file as bars, in file order: ``bar(symbol, interval, row, candle, known)`` with a
    ``TextRow`` and a ``candle`` (Candle's six fields, the floats) each. The row's close, high and low are made
    now: the close is every candle's mark, and a decision's spread reads the high and low of the last 21 rows, so
    most rows have them read, and a Decimal made here costs far less than one made on first read (the open and
    volume, read only when an order fills, are left: measured in instructions, the whole run is ~3 % below making
    all five, and ~2 % below leaving high and low lazy too)."""
    ts = file.timestamps[low:high].tolist()
    known = (file.timestamps[low:high] + interval_ms(file.interval)).tolist()
    texts = file.texts
    highs, lows, closes = (map(Decimal, texts[_PRICE_INDEX[name]][low:high]) for name in ("high", "low", "close"))
    symbol, interval, new, make_bar = file.symbol, file.interval, object.__new__, tuple.__new__
    row_builder, candle_builder = _builder(TextRow), _builder(candle)
    bars = []
    append = bars.append
    columns = zip(ts, *file.values[low:high].T.tolist(), highs, lows, closes, range(low, high), known, strict=False)
    for t, o, h, lo, c, v, high_d, low_d, close_d, at, known_at in columns:
        row = new(row_builder)
        row.timestamp, row.high, row.low, row.close, row._texts, row._at = t, high_d, low_d, close_d, texts, at
        row.__class__ = TextRow
        made = new(candle_builder)
        made.timestamp, made.open, made.high, made.low, made.close, made.volume = t, o, h, lo, c, v
        made.__class__ = candle
        append(make_bar(bar, (symbol, interval, row, made, known_at)))
    for position, checked in file.checked_rows.items():  # accepted rows checked one by one: their own CandleRow
        if low <= position < high:
            at = position - low
            bars[at] = make_bar(bar, (symbol, interval, checked, bars[at][3], known[at]))
    return bars


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Building a chunk makes some 40,000 objects and no cycle; a cyclic collection in between (every 700
    allocations, and full ones as the lists grow) would scan them, and the process's, again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
