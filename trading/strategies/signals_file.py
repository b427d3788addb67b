"""Signals from a file: ``--strategy signals_file:path=FILE`` emits the rows of a CSV at the close of the candle
with their open time, so a trader can backtest (or replay, or run live) signals that come from elsewhere, and
every risk rule can be tried from the command line on crafted candles.

The file: ``timestamp_ms,symbol,side[,confidence,reason]``, one signal a row, an optional header line. A bad row
is refused when the strategy is built, naming the line, so nothing runs on a file half understood. A symbol
traded on candles of several intervals gets a row's signal on each of them; ``interval=5m`` keeps it to one.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Collection, Mapping
from functools import lru_cache
from math import isfinite
from pathlib import Path
from typing import NamedTuple

from ground.amounts import counted

from .base import Candle, Signal, Strategy

HEADER = "timestamp_ms"
SECONDS_BEFORE = 100_000_000_000  # an epoch time below this is 1973 in milliseconds, 5138 in seconds
DEFAULT_REASON = "signals file"
Row = tuple[str, float, str]  # side, confidence, reason


class SignalsFileError(ValueError):
    """A signals file that cannot be used (unreadable, gone, empty, a bad row); the message names the file."""


class SignalsTable(NamedTuple):
    digest: str  # of the rows: a changed file is another strategy (cached live states are keyed by it)
    by_symbol: dict[str, dict[int, Row]]  # symbol -> open time -> row


class SignalsFile(Strategy):
    name = "signals_file"

    def __init__(self, path: str = "", interval: str = "", **overrides: float) -> None:
        if overrides:
            unknown = ", ".join(sorted(overrides))
            raise ValueError(f"signals_file: unknown parameter(s) {unknown}; known: path, interval")
        if not path:
            raise ValueError("signals_file: give the file as signals_file:path=FILE")
        super().__init__()
        self.path, self.interval = str(path), str(interval)
        self.table = _read_cached(Path(self.path))  # as read when built: what a run's end checks its rows against
        self.digest = self.table.digest
        self.series: tuple[str, str] | None = None  # (symbol, interval) once bound
        self.due: dict[int, Row] = {}

    @property
    def key(self) -> str:
        return f"{self.name}.v{self.version}(path={self.path},interval={self.interval},sha={self.digest})"

    @property
    def warmup(self) -> int:
        return 1

    def for_series(self, symbol: str, interval: str) -> SignalsFile:
        self.series = (symbol, interval)
        self.due = self._due()
        return self

    def _due(self) -> dict[int, Row]:
        if self.series is None or (self.interval and self.series[1] != self.interval):
            return {}
        return _read_cached(Path(self.path)).by_symbol.get(self.series[0], {})

    def on_candle(self, candle: Candle) -> Signal | None:
        found = self.due.get(candle.timestamp)
        if found is None:
            return None
        side, confidence, reason = found
        return Signal(side, confidence, reason, candle.close, candle.timestamp)

    def rows_without_candle(self, open_times: Mapping[tuple[str, str], Collection[int]]) -> list[tuple[int, str, str]]:
        """The file's rows that no candle of a run matched — (open time, symbol, side), oldest first — given the
        open times of the run's candles by (symbol, interval). A row fires only at the close of the candle with its
        open time, so a time in seconds, one off the interval grid or a symbol without data would otherwise be
        dropped without a word. Rows outside the run's time span (its symbol's, or the run's for a symbol without
        data) are left for the runs that cover them — a replay in parts — but a time in seconds is always wrong."""
        spans = {key: (min(times), max(times)) for key, times in open_times.items() if times}
        if not spans:
            return []
        run_span = (min(low for low, _ in spans.values()), max(high for _, high in spans.values()))
        missing = []
        for symbol, rows in self.table.by_symbol.items():
            keys = [k for k in spans if k[0] == symbol and (not self.interval or k[1] == self.interval)]
            low = min((spans[k][0] for k in keys), default=run_span[0])
            high = max((spans[k][1] for k in keys), default=run_span[1])
            missing += [
                (stamp, symbol, row[0])
                for stamp, row in rows.items()
                if (stamp < SECONDS_BEFORE or low <= stamp <= high) and not any(stamp in open_times[k] for k in keys)
            ]
        return sorted(missing)

    def unmatched_warning(self, open_times: Mapping[tuple[str, str], Collection[int]]) -> str | None:
        """What a run's summary says of ``rows_without_candle``, or of a file with a header and no rows (None:
        every row met its candle)."""
        if not self.table.by_symbol:
            return f"{self.path} has a header and no signal rows: no signal was decided"
        missing = self.rows_without_candle(open_times)
        if not missing:
            return None
        stamp, symbol, side = missing[0]
        symbols = {of for of, _ in open_times}
        if symbol not in symbols:
            why = f"no candles of {symbol} in this run"
        elif stamp < SECONDS_BEFORE:
            why = "a time in seconds? timestamp_ms is in milliseconds"
        else:
            why = f"no {symbol} candle opens at {stamp}"
        return (
            f"{counted(len(missing), 'signal row')} of {self.path} matched no candle and "
            f"{'was' if len(missing) == 1 else 'were'} not decided: "
            f"first {stamp},{symbol},{side} ({why})"
        )

    def __getstate__(self) -> dict:
        """Pickled (the live path caches the strategy after every candle) without the file's rows: they come back
        from the file when unpickled (a file changed since has another digest, so another key: the cached state is
        not used)."""
        state = self.__dict__.copy()
        state["due"] = state["table"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.table = _read_cached(Path(self.path))
        self.due = self._due()


def _read_cached(path: Path) -> SignalsTable:
    """``_read``, once per version of the file: the live path builds the strategy for every candle."""
    try:
        stat = path.stat()
    except OSError as error:
        raise SignalsFileError(f"signals_file: cannot read {path}: {error.strerror or error}") from None
    return _read(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _read(path: Path, _mtime_ns: int = 0, _size: int = 0) -> SignalsTable:
    """The file's rows by symbol and open time; a bad row raises SignalsFileError naming its line, and so does a file
    with neither a header nor a row (0 bytes: a file not written yet, or the wrong one)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (spreadsheet exports) is not data
    except OSError as error:
        raise SignalsFileError(f"signals_file: cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise SignalsFileError(f"signals_file: {path} is not UTF-8 text (byte {error.start})") from None
    by_symbol: dict[str, dict[int, Row]] = {}
    header = False
    for number, fields in enumerate(csv.reader(text.splitlines()), start=1):
        if not fields or not "".join(fields).strip():
            continue
        if number == 1 and fields[0].strip() == HEADER:
            header = True
            continue
        try:
            stamp, symbol, row = _row(fields, f"signals_file: {path} line {number}")
        except ValueError as error:
            raise SignalsFileError(str(error)) from None
        series = by_symbol.setdefault(symbol, {})
        if stamp in series:
            raise SignalsFileError(f"signals_file: {path} line {number}: a second signal for {symbol} at {stamp}")
        series[stamp] = row
    if not by_symbol and not header:
        raise SignalsFileError(
            f"signals_file: {path} is empty: no header and no rows (timestamp_ms,symbol,side[,confidence,reason])"
        )
    digest = hashlib.sha256(repr(sorted((s, sorted(rows.items())) for s, rows in by_symbol.items())).encode())
    return SignalsTable(digest.hexdigest()[:16], by_symbol)


def _row(fields: list[str], where: str) -> tuple[int, str, Row]:
    if not 3 <= len(fields) <= 5:
        raise ValueError(f"{where}: expected timestamp_ms,symbol,side[,confidence,reason]")
    stamp, symbol, side = (field.strip() for field in fields[:3])
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 15:
        raise ValueError(f"{where}: timestamp_ms {stamp!r} is not a time in epoch milliseconds")
    if not symbol.isascii() or not symbol.replace("_", "").isalnum():
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
    return int(stamp), symbol.upper(), (side.upper(), confidence, reason)
