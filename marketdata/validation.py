"""Validating recorded candles row by row. Pure: no ORM, no clock, no I/O beyond the lines it is given.

A CSV file is ``timestamp_ms,open,high,low,close,volume`` (header optional). Every data line either
becomes a ``CandleRow`` or a ``Rejection`` with one of ``REASONS``; a bad row never stops the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

HEADER = ("timestamp_ms", "open", "high", "low", "close", "volume")
QUANTUM = Decimal("1e-12")  # MoneyField: 12 fractional digits
MAX_VALUE = Decimal("1e18")  # MoneyField: 18 integer digits
SMALLEST_PRICE = Decimal("5e-13")  # rounds to 1e-12 at 12 places; anything smaller would be stored as 0

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
FILE_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]{1,20}_[A-Z0-9]{1,20})-(?P<interval>[0-9]+[smhdwM])\.csv$")


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
    if ts < 0 or ts != ts.to_integral_value():
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
        o, h, lo = o.quantize(QUANTUM), h.quantize(QUANTUM), lo.quantize(QUANTUM)
    if c.as_tuple().exponent < -12 or v.as_tuple().exponent < -12:
        c, v = c.quantize(QUANTUM), v.quantize(QUANTUM)
    return CandleRow(int(ts), o, h, lo, c, v)


def _is_header(fields: list[str]) -> bool:
    return [f.strip().lower() for f in fields] == list(HEADER) or (
        bool(fields) and fields[0].strip().lower().startswith("timestamp")
    )


class RowValidator:
    """Validates the data lines of one file in order, remembering the last accepted timestamp."""

    def __init__(self) -> None:
        self.last_timestamp: int | None = None

    def check(self, line_number: int, line: str) -> CandleRow | Rejection:
        result = check_row(line.strip().split(","))
        if isinstance(result, str):
            return Rejection(line_number, result, line)
        if self.last_timestamp is not None:
            if result.timestamp == self.last_timestamp:
                return Rejection(line_number, DUPLICATE_TIMESTAMP, line)
            if result.timestamp < self.last_timestamp:
                return Rejection(line_number, TIMESTAMP_GOING_BACK, line)
        self.last_timestamp = result.timestamp
        return result


def validate_lines(lines: Iterable[str]) -> Iterator[CandleRow | Rejection]:
    """Every data line of a CSV (the optional header and blank lines skipped), as a CandleRow or a Rejection."""
    validator = RowValidator()
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if number == 1 and _is_header(line.split(",")):
            continue
        yield validator.check(number, line)
