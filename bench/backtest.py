"""Backtest throughput: momentum strategy, all six risk layers and the paper fill model over every 5m file
of ../shared/data/candles together (34,513 candles, one shared portfolio).

Prints the load time, the simulation's candles per second (best of --repeat runs) and the peak RSS.
Targets (issue 9): ≥ 100,000 candles/s with all risk layers on, peak RSS < 200 MB.

    .venv/bin/python bench/backtest.py [--strategy momentum] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")


def main() -> None:
    import django

    django.setup()
    from django.conf import settings

    from execution.paper import PaperExchange
    from trading.backtest import Backtest, read_bars
    from trading.strategies import build_strategy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="momentum")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "candles"))
    args = parser.parse_args()

    files = sorted(str(p) for p in Path(args.data_dir).glob("*-5m.csv"))
    started = time.perf_counter()
    bars = list(read_bars(files))
    load = time.perf_counter() - started
    risk = {name: seed.value for name, seed in settings.RISK_PARAMETER_SEEDS.items()}
    best = None
    for _ in range(args.repeat):
        exchange = PaperExchange(
            slippage_pct=Decimal(settings.PAPER_SLIPPAGE_PCT),
            fee_rate=Decimal(settings.FEE_RATE),
            failure_rate=Decimal(0),
            max_volume_share=Decimal(settings.PAPER_MAX_VOLUME_SHARE),
        )
        backtest = Backtest(
            lambda: build_strategy(args.strategy), risk, Decimal(10000), exchange, Decimal(settings.POSITION_SIZE_PCT)
        )
        result = backtest.run(bars)
        best = result if best is None or result.seconds < best.seconds else best
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"files: {len(files)}  candles: {best.candles}  orders: {len(best.orders)}  trades: {len(best.closed)}")
    print(f"load (read + validate CSV): {load:.3f} s = {best.candles / load:,.0f} candles/s")
    print(f"simulation: {best.seconds:.3f} s = {best.candles / best.seconds:,.0f} candles/s (best of {args.repeat})")
    print(f"peak RSS: {peak_mb:.1f} MB")
    print(f"final equity: {best.final_equity}")


if __name__ == "__main__":
    main()
