"""Benchmark: the momentum strategy over every shared candle file in one process; prints candles per second.

    .venv/bin/python bench/signals.py [--strategy momentum] [--repeat 5] [--data ../shared/data/candles]

Candles are parsed into ``Candle`` objects first (not timed); the timed part is what
the backtest and the live path run per candle: a fresh strategy per file, fed every
candle in timestamp order through ``on_candle``. The best of ``--repeat`` runs is
reported (the least disturbed by other processes), along with the signal count.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trading.strategies import Candle, strategy_from_spec  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "candles"


def load(path: Path) -> list[Candle]:
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        next(rows)  # header: timestamp_ms,open,high,low,close,volume
        candles = [Candle(int(t), float(o), float(h), float(lo), float(c), float(v)) for t, o, h, lo, c, v in rows]
    candles.sort(key=lambda candle: candle.timestamp)
    return candles


def run_once(spec: str, series: list[list[Candle]]) -> tuple[float, int]:
    signals = 0
    start = time.perf_counter()
    for candles in series:
        on_candle = strategy_from_spec(spec).on_candle
        for candle in candles:
            if on_candle(candle) is not None:
                signals += 1
    return time.perf_counter() - start, signals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="momentum", help="strategy spec, e.g. momentum:ema_fast=9")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    files = sorted(args.data.glob("*.csv"))
    if not files:
        parser.error(f"no candle files in {args.data}")
    series = [load(path) for path in files]
    total = sum(map(len, series))
    best, signals = min(run_once(args.strategy, series) for _ in range(max(1, args.repeat)))
    print(f"strategy {args.strategy}: {total} candles in {len(files)} files, {signals} signals")
    print(f"best of {args.repeat}: {best:.4f} s = {total / best:,.0f} candles/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
