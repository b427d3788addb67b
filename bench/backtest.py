"""Backtest speed: loading, simulating and the whole `manage.py backtest` command over every 5m file of
../shared/data/candles (34,513 candles, one shared portfolio), and side by side with Freqtrade.

Prints, each the best of --repeat runs:

* load: ``read_bars`` over the files, every bar built (marketdata/candle_files.py);
* simulation: ``Backtest.run`` over the loaded bars (momentum strategy, all six risk layers, paper fills);
* the whole command: ``manage.py backtest --data <files> --capital 1 --json r.json`` in a fresh process under
  ``/usr/bin/time -v``: wall time (start-up, load, simulation, report) and peak RSS.

With ``--freqtrade`` (after ``bash ../shared/compare/freqtrade/setup.sh``), Freqtrade's whole ``backtesting``
command (``run_ft.py``, the same candles, an EMA/RSI strategy) runs interleaved with ours, --rounds times, and
the ratios are printed: whole command (ours faster by), peak RSS (ours / theirs), and simulation (their
``loop_s`` — signals, DataFrame to lists, the candle loop — over our simulation time).

Targets (issue "Backtest in about a second", 2-core machine): whole command ≥ 8× faster than Freqtrade's with
peak RSS ≤ half of theirs; load ≥ 300,000 candles/s; simulation ≥ 15× Freqtrade's loop (measured, reported).

    .venv/bin/python bench/backtest.py [--repeat 5] [--freqtrade [--rounds 2]]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")
FREQTRADE = ROOT.parent / "shared" / "compare" / "freqtrade"
FT_PYTHON = Path("/tmp/ftvenv/bin/python")


def timed(command: list[str], cwd: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a command, from /usr/bin/time -v."""
    report = out.with_suffix(".time")
    subprocess.run(["/usr/bin/time", "-v", "-o", str(report), *command], cwd=cwd, check=True, capture_output=True)
    text = report.read_text()
    clock = re.search(r"Elapsed \(wall clock\) time.*?: (.*)", text).group(1).split(":")
    wall = sum(float(part) * 60**power for power, part in enumerate(reversed(clock)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    return wall, rss


def in_process(files: list[str], strategy: str, repeat: int) -> tuple[int, float, float, dict]:
    """Best load and simulation seconds, in this process (Django set up as the command has it)."""
    import django

    django.setup()
    from django.conf import settings

    from execution.paper import PaperExchange
    from trading.backtest import Backtest, read_bars
    from trading.strategies import build_strategy

    risk = {name: seed.value for name, seed in settings.RISK_PARAMETER_SEEDS.items()}

    def backtest() -> Backtest:
        exchange = PaperExchange(
            slippage_pct=Decimal(settings.PAPER_SLIPPAGE_PCT),
            fee_rate=Decimal(settings.FEE_RATE),
            failure_rate=Decimal(0),
            max_volume_share=Decimal(settings.PAPER_MAX_VOLUME_SHARE),
        )
        return Backtest(
            lambda: build_strategy(strategy), risk, Decimal(10000), exchange, Decimal(settings.POSITION_SIZE_PCT)
        )

    load = simulation = float("inf")
    summary = {}
    for _ in range(repeat):
        started = time.perf_counter()
        bars = list(read_bars(files))
        load = min(load, time.perf_counter() - started)
        result = backtest().run(bars)
        simulation = min(simulation, result.seconds)
        summary = {"orders": len(result.orders), "trades": len(result.closed), "equity": str(result.final_equity)}
        del bars
    return result.candles, load, simulation, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="momentum")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "candles"))
    parser.add_argument("--freqtrade", action="store_true", help="run Freqtrade's backtesting side by side")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds with --freqtrade")
    args = parser.parse_args()
    files = sorted(str(p) for p in Path(args.data_dir).glob("*-5m.csv"))

    candles, load, simulation, summary = in_process(files, args.strategy, args.repeat)
    print(f"files: {len(files)}  candles: {candles}  {summary}")
    print(f"load (read, validate, build bars): {load:.3f} s = {candles / load:,.0f} candles/s")
    print(f"simulation:                        {simulation:.3f} s = {candles / simulation:,.0f} candles/s")

    ours = [sys.executable, "manage.py", "backtest", "--data", *files, "--capital", "1", "--no-progress"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rounds = args.rounds if args.freqtrade else args.repeat
        mine, theirs = [], []
        for number in range(rounds):
            mine.append(timed([*ours, "--json", str(work / f"ours{number}.json")], ROOT, work / f"ours{number}"))
            if args.freqtrade:
                result = work / f"ft{number}.json"
                command = [str(FT_PYTHON), str(FREQTRADE / "run_ft.py"), "--json", str(result)]
                wall, rss = timed(command, FREQTRADE, work / f"ft{number}")
                theirs.append((wall, rss, json.loads(result.read_text())))
        wall, rss = min(w for w, _ in mine), max(r for _, r in mine)
        print(f"whole command (manage.py backtest): {wall:.2f} s wall, peak RSS {rss:.0f} MB  (best of {rounds})")
        for number, (ours_wall, ours_rss) in enumerate(mine):
            line = f"  round {number + 1}: ours {ours_wall:.2f} s {ours_rss:.0f} MB"
            if theirs:
                ft_wall, ft_rss, ft = theirs[number]
                line += f" | freqtrade {ft_wall:.2f} s {ft_rss:.0f} MB (loop {ft['loop_s']:.3f} s)"
                line += f" | {ft_wall / ours_wall:.1f}x faster, RSS {ours_rss / ft_rss:.2f}"
            print(line)
        if theirs:
            ft_wall = min(w for w, _, _ in theirs)
            ft_rss = min(r for _, r, _ in theirs)
            ft_loop = min(ft["loop_s"] for _, _, ft in theirs)
            print(
                f"freqtrade {theirs[0][2].get('freqtrade')}: {ft_wall:.2f} s wall, "
                f"peak RSS {ft_rss:.0f} MB, loop {ft_loop:.3f} s"
            )
            print(
                f"ratios (best against best): whole command {ft_wall / wall:.1f}x faster (target ≥ 8), "
                f"peak RSS {rss / ft_rss:.2f} of Freqtrade's (target ≤ 0.5), "
                f"simulation {ft_loop / simulation:.1f}x Freqtrade's loop (target ≥ 15)"
            )
    print(f"load average: {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")


if __name__ == "__main__":
    main()
