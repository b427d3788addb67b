"""Backtest throughput: momentum strategy, all six risk layers and the paper fill model over every 5m file
of ../shared/data/candles together (34,513 candles, one shared portfolio).

Prints, each the best of --repeat runs:

* load: reading and validating the CSV files into bars (``read_bars``);
* simulation: ``Backtest.run`` over the loaded bars (the figure the target is about);
* end to end: ``Backtest.run(read_bars(files))`` streamed, as ``manage.py backtest`` does (load + simulation);

then the peak RSS of the process and the load average (other work on the machine slows every figure).
Targets (issue 9): ≥ 100,000 candles/s with all risk layers on, peak RSS < 200 MB.

    .venv/bin/python bench/backtest.py [--strategy momentum] [--repeat 5]
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
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "candles"))
    args = parser.parse_args()

    files = sorted(str(p) for p in Path(args.data_dir).glob("*-5m.csv"))
    risk = {name: seed.value for name, seed in settings.RISK_PARAMETER_SEEDS.items()}

    def backtest() -> Backtest:
        exchange = PaperExchange(
            slippage_pct=Decimal(settings.PAPER_SLIPPAGE_PCT),
            fee_rate=Decimal(settings.FEE_RATE),
            failure_rate=Decimal(0),
            max_volume_share=Decimal(settings.PAPER_MAX_VOLUME_SHARE),
        )
        return Backtest(
            lambda: build_strategy(args.strategy), risk, Decimal(10000), exchange, Decimal(settings.POSITION_SIZE_PCT)
        )

    load = simulation = end_to_end = float("inf")
    best = None
    for _ in range(args.repeat):
        started = time.perf_counter()
        bars = list(read_bars(files))
        load = min(load, time.perf_counter() - started)
        result = backtest().run(bars)
        simulation = min(simulation, result.seconds)
        best = result if best is None or result.seconds <= best.seconds else best
        del bars
        started = time.perf_counter()
        streamed = backtest().run(read_bars(files))
        end_to_end = min(end_to_end, time.perf_counter() - started)
        assert (streamed.final_equity, len(streamed.orders)) == (best.final_equity, len(best.orders))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = best.candles
    print(f"files: {len(files)}  candles: {n}  orders: {len(best.orders)}  trades: {len(best.closed)}")
    print(f"load (read + validate CSV): {load:.3f} s = {n / load:,.0f} candles/s")
    print(f"simulation:                 {simulation:.3f} s = {n / simulation:,.0f} candles/s")
    print(f"end to end (load + sim):    {end_to_end:.3f} s = {n / end_to_end:,.0f} candles/s")
    print(f"(best of {args.repeat} each)  peak RSS: {peak_mb:.1f} MB  load average: {os.getloadavg()[0]:.2f}")
    print(f"final equity: {best.final_equity}")


if __name__ == "__main__":
    main()
