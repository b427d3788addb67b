"""The seam through which trials get their candles: a per-process cache of loaded files, so a worker reads and
validates each file once and hands the same (immutable) bars to every later trial.

A file is known by its resolved path, modification time and size: a file rewritten in place is read again. The
bars are those ``trading.backtest.read_bars`` makes, merged in its order (the time each is known, its close, then
symbol and interval, ties in file order), so a trial sees exactly the candles ``manage.py backtest`` reads.
"""

from __future__ import annotations

import gc
import os
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from marketdata.stale import CandleSeries
from trading.backtest import Bar, add_series, read_bars

MERGED_KEPT = 4  # merged sets of files kept (each file's bars are kept once, whatever sets use them)

FileKey = tuple[str, int, int]  # resolved path, mtime in ns, size


@dataclass(frozen=True)
class Candles:
    """Bars in the order they are known and those times, for cutting windows."""

    bars: tuple[Bar, ...]
    known: tuple[int, ...]
    series: dict[str, CandleSeries]  # what the data-stale watch expects of each symbol (``read_bars``' series)

    def window(self, start: int | None, end: int | None) -> tuple[Bar, ...]:
        """The bars opened in ``start <= time <= end`` (either bound may be open), as ``backtest --from/--to`` cut.
        A bar is known one interval after it opens: its range of known times is found by bisection, then cut by
        open time (with several intervals the two orders differ near the bounds)."""
        if start is None and end is None:
            return self.bars
        lengths = [series.interval_ms for series in self.series.values()] or [0]
        low = 0 if start is None else bisect_left(self.known, start + min(lengths))
        high = len(self.bars) if end is None else bisect_right(self.known, end + max(lengths))
        inside = self.bars[low:high]
        if len(set(lengths)) == 1:  # one interval: known in that range is opened in [start, end]
            return inside
        return tuple(
            b for b in inside if (start is None or b.row.timestamp >= start) and (end is None or b.row.timestamp <= end)
        )


class CandleCache:
    """Each file's bars by FileKey; the merged bars of the last few sets of files."""

    def __init__(self) -> None:
        self.files: dict[FileKey, tuple[tuple[Bar, ...], dict[str, CandleSeries]]] = {}
        self.merged: OrderedDict[tuple[FileKey, ...], Candles] = OrderedDict()
        self.loads = 0  # files read so far by this process (what a test checks to see the cache work)

    @staticmethod
    def key(path: str) -> FileKey:
        resolved = Path(path).resolve()
        stat = os.stat(resolved)
        return str(resolved), stat.st_mtime_ns, stat.st_size

    def _file(self, path: str, key: FileKey) -> tuple[tuple[Bar, ...], dict[str, CandleSeries]]:
        found = self.files.get(key)
        if found is None:
            for stale in [k for k in self.files if k[0] == key[0]]:
                del self.files[stale]
            series: dict[str, CandleSeries] = {}
            found = self.files[key] = (tuple(read_bars([path], None, series)), series)
            self.loads += 1
            gc.freeze()  # long-lived: the collector need not scan them again on every full collection
        return found

    def candles(self, paths: list[str]) -> Candles:
        keys = tuple(self.key(p) for p in paths)
        found = self.merged.get(keys)
        if found is not None:
            self.merged.move_to_end(keys)
            return found
        per_file = [self._file(p, k) for p, k in zip(paths, keys, strict=True)]
        # read_bars' order: (known time, symbol, interval), ties in file order (a stable sort of the files one after
        # another)
        bars = tuple(sorted((b for bars, _ in per_file for b in bars), key=_merge_key))
        series: dict[str, CandleSeries] = {}
        for _, file_series in per_file:
            for symbol, more in file_series.items():
                add_series(series, symbol, more)
        found = self.merged[keys] = Candles(bars, tuple(b.known for b in bars), series)
        while len(self.merged) > MERGED_KEPT:
            self.merged.popitem(last=False)
        return found


def _merge_key(bar: Bar) -> tuple[int, str, str]:
    return bar.known, bar.symbol, bar.interval


_CACHE = CandleCache()


def candles(paths: list[str]) -> Candles:
    """The process's cached candles of ``paths`` (read on first use, or when a file changed)."""
    return _CACHE.candles(paths)


def loads() -> int:
    return _CACHE.loads
