"""Validating recorded candles row by row. Pure: no ORM, no clock, no I/O beyond the lines it is given.

A CSV file is ``timestamp_ms,open,high,low,close,volume`` (header optional). Every data line either
becomes a ``CandleRow`` or a ``Rejection`` with one of ``REASONS``; a bad row never stops the file.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path

HEADER = ("timestamp_ms", "open", "high", "low", "close", "volume")
QUANTUM = Decimal("1e-12")  # MoneyField: 12 fractional digits
MAX_VALUE = Decimal("1e18")  # MoneyField: 18 integer digits
WIDE = Context(prec=30)  # 18 integer digits and 12 decimals: what quantizing a value below MAX_VALUE may need
SMALLEST_PRICE = Decimal("5e-13")  # rounds to 1e-12 at 12 places; anything smaller would be stored as 0
# 9999-12-31T23:59:59.999Z, EVENT_SCHEMA.json's bound: a later timestamp overflowed PostgreSQL's bigint (or failed
# the event's validation) and aborted a whole replay
MAX_TIMESTAMP_MS = 253_402_300_799_999

MALFORMED = "malformed_line"
NON_NUMERIC = "non_numeric"
BAD_TIMESTAMP = "bad_timestamp"
OUT_OF_RANGE = "value_out_of_range"
NON_POSITIVE_PRICE = "non_positive_price"
HIGH_BELOW_LOW = "high_below_low"
OPEN_CLOSE_OUTSIDE_RANGE = "open_close_outside_range"
NEGATIVE_VOLUME = "negative_volume"
DUPLICATE_TIMESTAMP = "duplicate_timestamp"
TIMESTAMP_GOING_BACK = "timestamp_going_back"
TIMESTAMP_OUT_OF_ORDER = "timestamp_out_of_order"  # ahead of the rows after it, which are kept
# not an open time of the file's interval (a 1m candle opens on a whole minute): a time in seconds, or shifted
OFF_GRID = "timestamp_off_interval_grid"
REASONS = (
    MALFORMED,
    NON_NUMERIC,
    BAD_TIMESTAMP,
    OUT_OF_RANGE,
    NON_POSITIVE_PRICE,
    HIGH_BELOW_LOW,
    OPEN_CLOSE_OUTSIDE_RANGE,
    NEGATIVE_VOLUME,
    DUPLICATE_TIMESTAMP,
    TIMESTAMP_GOING_BACK,
    TIMESTAMP_OUT_OF_ORDER,
    OFF_GRID,
)

INTERVAL_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
# The candle intervals of MEXC's spot market (1m 5m 15m 30m 60m 4h 1d 1W 1M) that this code times (a candle's close:
# open time + interval), in its names: MEXC's 60m is 1h; a week and a month are not timed.
EXCHANGE_INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
SYMBOL = re.compile(r"[A-Z0-9]{1,20}_[A-Z0-9]{1,20}")  # BASE_QUOTE, as EVENT_SCHEMA.json has it
FILE_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]{1,20}_[A-Z0-9]{1,20})-(?P<interval>[0-9]+[smhdwM])\.csv$")


def _plain_number() -> str:
    """A value of at most 16 digits before the point and 12 after it, or, times 10 to the power -k (5.33e-05),
    at most 12 - k after it: in both cases at most 12 decimals in all."""
    forms = [r"(?:\.[0-9]{0,12})?"]
    for k in range(13):
        forms.append(rf"(?:\.[0-9]{{0,{12 - k}}})?[eE]-{'0?' if k < 10 else ''}{k}")
    return "([0-9]{1,16}(?:" + "|".join(forms) + "))"


# A plain row: ASCII digits only, the timestamp an integer, every value a _plain_number (at most 28 digits: the
# context's precision, so even abs() is exact). Such a row parses, is finite, non-negative, below MAX_VALUE and
# on QUANTUM's grid, so of check_row's checks only the price floor and the high/low/open/close order are left
# (``_check_plain``). Every other row goes through check_row.
PLAIN_ROW = re.compile(r"([0-9]{1,18})," + ",".join([_plain_number()] * 5))


@dataclass(frozen=True, slots=True)
class CandleRow:
    timestamp: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class Rejection:
    line_number: int
    reason: str
    line: str


def interval_ms(interval: str) -> int:
    """Milliseconds of an interval such as ``1m``, ``5m``, ``1h``; ValueError for anything else."""
    if interval in INTERVAL_MS:
        return INTERVAL_MS[interval]
    match = re.fullmatch(r"([0-9]+)([smhd])", interval)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"unsupported interval {interval!r}")
    return int(match.group(1)) * {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[match.group(2)]


def exchange_interval(interval: str) -> str:
    """``interval`` when the exchange has candles of it (``EXCHANGE_INTERVALS``); ValueError naming those otherwise:
    a file of 7m candles is a mistake, not a market."""
    if interval not in EXCHANGE_INTERVALS:
        raise ValueError(
            f"{interval} is not an exchange interval; MEXC spot has {', '.join(EXCHANGE_INTERVALS)} (its 60m is 1h)"
        )
    return interval


def known_at(timestamp: int, interval: str) -> int:
    """When a candle opened at ``timestamp`` is known: at its close, open time + interval. Decisions, the replay's
    order and the backtest's are by this time, so a 5m candle is not seen by a 1m decision before it has closed."""
    return timestamp + interval_ms(interval)


def market_day(at_ms: int) -> int:
    """The UTC day (days since the epoch) a market time belongs to: that of the instant just before it, so the
    candles known at 00:00 (closed then) end the old day and the first candle opened at 00:00 starts the new one."""
    return (at_ms - 1) // 86_400_000


def parse_file_name(path: str | Path) -> tuple[str, str] | None:
    """``ETH_BTC-5m.csv`` → ("ETH_BTC", "5m"); None when the name does not follow SYMBOL-INTERVAL.csv."""
    match = FILE_NAME.match(Path(path).name)
    return (match.group("symbol"), match.group("interval")) if match else None


def check_row(fields: list[str]) -> CandleRow | str:
    """One row's own checks (everything but the order of timestamps): a CandleRow or a reason."""
    if len(fields) != 6:
        return MALFORMED
    try:
        ts, o, h, lo, c, v = [Decimal(field) for field in fields]  # surrounding blanks are allowed
    except (InvalidOperation, ValueError):
        return NON_NUMERIC
    if not (ts.is_finite() and o.is_finite() and h.is_finite() and lo.is_finite() and c.is_finite() and v.is_finite()):
        return NON_NUMERIC  # NaN, Infinity
    if ts < 0 or ts > MAX_TIMESTAMP_MS or ts != ts.to_integral_value():
        return BAD_TIMESTAMP
    if max(abs(o), abs(h), abs(lo), abs(c), abs(v)) >= MAX_VALUE:
        return OUT_OF_RANGE
    if min(o, h, lo, c) < SMALLEST_PRICE:  # ≤ 0, or so small it would be stored as 0
        return NON_POSITIVE_PRICE
    if h < lo:
        return HIGH_BELOW_LOW
    if not (lo <= o <= h and lo <= c <= h):
        return OPEN_CLOSE_OUTSIDE_RANGE
    if v < 0:
        return NEGATIVE_VOLUME
    if o.as_tuple().exponent < -12 or h.as_tuple().exponent < -12 or lo.as_tuple().exponent < -12:
        o, h, lo = (
            o.quantize(QUANTUM, context=WIDE),
            h.quantize(QUANTUM, context=WIDE),
            lo.quantize(QUANTUM, context=WIDE),
        )
    if c.as_tuple().exponent < -12 or v.as_tuple().exponent < -12:
        c, v = c.quantize(QUANTUM, context=WIDE), v.quantize(QUANTUM, context=WIDE)
    return CandleRow(int(ts), o, h, lo, c, v)


_plain_row = PLAIN_ROW.fullmatch


def _check_plain(ts: str, o: str, h: str, lo: str, c: str, v: str) -> CandleRow | str:
    """check_row for a PLAIN_ROW match: the same result, without the checks that cannot fail."""
    if int(ts) > MAX_TIMESTAMP_MS:
        return BAD_TIMESTAMP
    o, h, lo, c = Decimal(o), Decimal(h), Decimal(lo), Decimal(c)
    if min(o, h, lo, c) < SMALLEST_PRICE:
        return NON_POSITIVE_PRICE
    if h < lo:
        return HIGH_BELOW_LOW
    if not (lo <= o <= h and lo <= c <= h):
        return OPEN_CLOSE_OUTSIDE_RANGE
    return CandleRow(int(ts), o, h, lo, c, Decimal(v))


def is_header(fields: list[str]) -> bool:
    """The first line's fields name the columns (``timestamp_ms,open,…``) rather than hold a candle."""
    return [f.strip().lower() for f in fields] == list(HEADER) or (
        bool(fields) and fields[0].strip().lower().startswith("timestamp")
    )


def check_line(line: str) -> CandleRow | str:
    """One data line's own checks (everything but the order of timestamps): a CandleRow or a reason."""
    plain = _plain_row(line)
    return _check_plain(*plain.groups()) if plain is not None else check_row(line.strip().split(","))


def order_verdicts(timestamps: Sequence[int]) -> list[str | None]:
    """The order rule over a file's candles that pass their own checks, in file order: None for a candle kept,
    else the reason it is refused. The most candles in strictly increasing order are kept (a longest increasing
    subsequence), so one misplaced row costs itself, not the valid rows around it; of several such sequences, the
    one keeping the earlier rows (a duplicate's first row, as reading in order keeps it). A refused row's reason
    compares it with the latest candle kept before it: DUPLICATE_TIMESTAMP (the same time), TIMESTAMP_GOING_BACK
    (before it), TIMESTAMP_OUT_OF_ORDER (after it: ahead of the candles kept after it)."""
    tails: list[int] = []  # tails[k]: the smallest last timestamp of an increasing run of k + 1 candles so far
    by_length: list[list[int]] = []  # the positions whose longest run ending there has k + 1 candles, in order
    for position, timestamp in enumerate(timestamps):
        k = bisect_left(tails, timestamp)
        if k == len(tails):
            tails.append(timestamp)
            by_length.append([])
        else:
            tails[k] = timestamp
        by_length[k].append(position)
    kept = [False] * len(timestamps)
    bound = None  # the timestamp of the candle kept after the one looked for
    for positions in reversed(by_length):  # the longest run from its end, one candle per length
        # Along ``positions`` the timestamps never rise (a later, higher one would end a longer run), so those below
        # ``bound`` are a tail of the list; its first is the earliest, and lies before the candle kept after it
        # (some run of this length ends there, below it).
        first = 0 if bound is None else bisect_right(positions, -bound, key=lambda p: -timestamps[p])
        bound = timestamps[positions[first]]
        kept[positions[first]] = True
    verdicts: list[str | None] = []
    latest = None  # the latest timestamp kept so far
    for position, timestamp in enumerate(timestamps):
        if kept[position]:
            verdicts.append(None)
            latest = timestamp
        elif latest is not None and timestamp == latest:
            verdicts.append(DUPLICATE_TIMESTAMP)
        elif latest is not None and timestamp < latest:
            verdicts.append(TIMESTAMP_GOING_BACK)
        else:
            verdicts.append(TIMESTAMP_OUT_OF_ORDER)
    return verdicts


def validate_lines(lines: Iterable[str], interval: str | None = None) -> Iterator[CandleRow | Rejection]:
    """Every data line of a CSV (the optional header and blank lines skipped), as a CandleRow or a Rejection, in
    file order. ``interval``: the file's (its name's), whose grid every open time must be on (``OFF_GRID``). The
    order of timestamps is judged over the whole file (``order_verdicts``): the lines are read before the first is
    given out."""
    step = INTERVAL_MS.get(interval) if interval else None
    checked: list[tuple[int, str, CandleRow | str]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if number == 1 and is_header(line.split(",")):
            continue
        result = check_line(line)
        if step and not isinstance(result, str) and result.timestamp % step:
            result = OFF_GRID
        checked.append((number, line, result))
    verdicts = iter(order_verdicts([result.timestamp for _, _, result in checked if not isinstance(result, str)]))
    for number, line, result in checked:
        reason = result if isinstance(result, str) else next(verdicts)
        yield result if reason is None else Rejection(number, reason, line)


def off_grid_hint(lines: Iterable[str], interval: str) -> str | None:
    """Said when a file gave no valid candle: its first time off the ``interval`` grid, as a likely cause (None:
    none is)."""
    for item in validate_lines(lines, interval):
        if isinstance(item, Rejection) and item.reason == OFF_GRID:
            time = item.line.split(",")[0].strip()
            return f"{time} is not a {interval} open time in epoch ms: a time in seconds?"
    return None
