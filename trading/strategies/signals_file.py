"""Signals from a file: ``--strategy signals_file:path=FILE`` emits the rows of a CSV at the close of the candle
with their open time, so a trader can backtest (or replay, or run live) signals that come from elsewhere, and
every risk rule can be tried from the command line on crafted candles.

The file: ``timestamp_ms,symbol,side[,confidence,reason]``, one signal a row, an optional header line. A bad row
is refused when the strategy is built, naming the line, so nothing runs on a file half understood.
"""

from __future__ import annotations

import csv
import hashlib
from functools import lru_cache
from math import isfinite
from pathlib import Path

from .base import Candle, Signal, Strategy

HEADER = "timestamp_ms"
DEFAULT_REASON = "signals file"


class SignalsFile(Strategy):
    name = "signals_file"

    def __init__(self, path: str = "", **overrides: float) -> None:
        if not path:
            raise ValueError("signals_file: give the file as signals_file:path=FILE")
        super().__init__(**overrides)
        self.path = str(path)
        self.rows = _read_cached(Path(self.path))
        self.digest = hashlib.sha256(repr(sorted(self.rows.items())).encode()).hexdigest()[:16]
        self.symbol: str | None = None
        self.due: dict[int, tuple[str, float, str]] = {}

    @property
    def key(self) -> str:
        """Name, state version and the file's content: a changed file is another strategy (cached states)."""
        return f"{self.name}.v{self.version}(path={self.path},sha={self.digest})"

    @property
    def warmup(self) -> int:
        return 1

    def for_series(self, symbol: str, interval: str) -> SignalsFile:
        self.symbol = symbol
        self.due = {ts: signal for (ts, row_symbol), signal in self.rows.items() if row_symbol == symbol}
        return self

    def on_candle(self, candle: Candle) -> Signal | None:
        found = self.due.get(candle.timestamp)
        if found is None:
            return None
        side, confidence, reason = found
        return Signal(side, confidence, reason, candle.close, candle.timestamp)


def _read_cached(path: Path) -> dict[tuple[int, str], tuple[str, float, str]]:
    """``_read``, once per version of the file: the live path builds the strategy for every candle."""
    try:
        stat = path.stat()
    except OSError as error:
        raise ValueError(f"signals_file: cannot read {path}: {error.strerror or error}") from None
    return _read(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _read(path: Path, _mtime_ns: int = 0, _size: int = 0) -> dict[tuple[int, str], tuple[str, float, str]]:
    """The file's rows keyed by (open time, symbol); a bad row raises ValueError naming its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"signals_file: cannot read {path}: {error.strerror or error}") from None
    rows: dict[tuple[int, str], tuple[str, float, str]] = {}
    for number, fields in enumerate(csv.reader(text.splitlines()), start=1):
        if not fields or not "".join(fields).strip() or (number == 1 and fields[0].strip() == HEADER):
            continue
        where = f"signals_file: {path} line {number}"
        if not 3 <= len(fields) <= 5:
            raise ValueError(f"{where}: expected timestamp_ms,symbol,side[,confidence,reason]")
        stamp, symbol, side = (field.strip() for field in fields[:3])
        if not stamp.isdigit() or len(stamp) > 15:
            raise ValueError(f"{where}: timestamp_ms {stamp!r} is not a time in epoch milliseconds")
        if not symbol or not symbol.replace("_", "").isalnum():
            raise ValueError(f"{where}: symbol {symbol!r} is not a symbol like BTC_USDT")
        if side.upper() not in ("BUY", "SELL"):
            raise ValueError(f"{where}: side {side!r} is neither BUY nor SELL")
        confidence = 1.0
        if len(fields) > 3 and fields[3].strip():
            try:
                confidence = float(fields[3])
            except ValueError:
                confidence = -1.0
            if not (isfinite(confidence) and 0 <= confidence <= 1):
                raise ValueError(f"{where}: confidence {fields[3].strip()!r} is not a number in 0–1")
        reason = fields[4].strip() if len(fields) > 4 and fields[4].strip() else DEFAULT_REASON
        key = (int(stamp), symbol.upper())
        if key in rows:
            raise ValueError(f"{where}: a second signal for {key[1]} at {key[0]}")
        rows[key] = (side.upper(), confidence, reason)
    return rows
