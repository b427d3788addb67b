"""Backtest speed: loading, simulating and the whole `manage.py backtest` command over every 5m file of
../shared/data/candles (34,513 candles, one shared portfolio), and side by side with Freqtrade.

Prints per round and then the best of the rounds:

* load: ``read_bars`` over the files, every bar built (marketdata/candle_files.py);
* simulation: ``Backtest.run`` over the loaded bars (momentum strategy, all six risk layers, paper fills);
* the whole command: ``manage.py backtest --data <files> --capital 1 --json r.json`` in a fresh process under
  ``/usr/bin/time -v``: wall time (start-up, load, simulation, report), CPU seconds (user + system: less moved
  by other work on a shared machine than the wall time) and peak RSS.

With ``--freqtrade`` (after ``bash ../shared/compare/freqtrade/setup.sh``), Freqtrade's whole ``backtesting``
command (``run_ft.py``, the same candles, an EMA/RSI strategy) runs in each round right after ours, and the
ratios are printed: whole command (ours faster by, in wall and in CPU seconds), peak RSS (ours / theirs), and
simulation (their ``loop_s`` — signals, DataFrame to lists, the candle loop — over our simulation time).

Targets (issue "Backtest in about a second", 2-core machine): whole command ≥ 8× faster than Freqtrade's with
peak RSS ≤ half of theirs; load ≥ 300,000 candles/s; simulation ≥ 15× Freqtrade's loop (measured, reported).

    .venv/bin/python bench/backtest.py [--repeat 5] [--rounds 2] [--freqtrade]
"""

from __future__ import annotations

import argparse
import gc
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


def timed(command: list[str], cwd: Path, out: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of a command, from /usr/bin/time -v."""
    report = out.with_suffix(".time")
    subprocess.run(["/usr/bin/time", "-v", "-o", str(report), *command], cwd=cwd, check=True, capture_output=True)
    text = report.read_text()
    clock = re.search(r"Elapsed \(wall clock\) time.*?: (.*)", text).group(1).split(":")
    wall = sum(float(part) * 60**power for power, part in enumerate(reversed(clock)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", text).group(1)) for kind in ("User", "System"))
    return wall, rss, cpu


def compile_tree(root: Path) -> None:
    """Byte-compile the project's modules, as any run after the first finds them: with PYTHONDONTWRITEBYTECODE set
    (the Docker image, some shells) every timed run would compile them again (~7 % of the whole command's
    instructions), while the packages it imports were compiled when installed."""
    packages = [str(path) for path in root.iterdir() if (path / "__init__.py").is_file()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "manage.py", *packages], cwd=root, check=True)


def in_process(files: list[str], strategy: str, repeat: int) -> tuple[int, float, float, dict]:
    """Best load and simulation seconds of --repeat runs, in this process (Django set up as the command has it)."""
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

    gc.freeze()  # as the command does before it reads
    load = simulation = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        series: dict = {}
        bars = list(read_bars(files, None, series))
        load = min(load, time.perf_counter() - started)
        run = backtest()
        run.watched = series  # the data-stale watch, as the command runs it
        result = run.run(bars)
        simulation = min(simulation, result.seconds)
        del bars
    summary = {"orders": len(result.orders), "trades": len(result.closed), "equity": str(result.final_equity)}
    return result.candles, load, simulation, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="momentum")
    parser.add_argument("--repeat", type=int, default=5, help="in-process runs per round (best taken)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of: in process, our command, Freqtrade's")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "candles"))
    parser.add_argument("--freqtrade", action="store_true", help="run Freqtrade's backtesting side by side")
    args = parser.parse_args()
    files = sorted(str(p) for p in Path(args.data_dir).glob("*-5m.csv"))
    if args.freqtrade and not FT_PYTHON.is_file():
        sys.exit(f"no {FT_PYTHON}: run bash {FREQTRADE}/setup.sh first")

    compile_tree(ROOT)
    import django

    django.setup()
    ours = [sys.executable, "manage.py", "backtest", "--data", *files, "--capital", "1"]  # the command
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for number in range(args.rounds):
            candles, load, simulation, summary = in_process(files, args.strategy, args.repeat)
            wall, rss, cpu = timed([*ours, "--json", str(work / f"ours{number}.json")], ROOT, work / f"ours{number}")
            row = {"load": load, "simulation": simulation, "wall": wall, "rss": rss, "cpu": cpu}
            if args.freqtrade:
                result = work / f"ft{number}.json"
                command = [str(FT_PYTHON), str(FREQTRADE / "run_ft.py"), "--json", str(result)]
                row["ft_wall"], row["ft_rss"], row["ft_cpu"] = timed(command, FREQTRADE, work / f"ft{number}")
                row["ft"] = json.loads(result.read_text())
            rounds.append(row)
            line = (
                f"round {number + 1}: load {candles / load:,.0f} candles/s, simulation {candles / simulation:,.0f}"
                f" candles/s ({simulation:.3f} s), command {wall:.2f} s (CPU {cpu:.2f} s) {rss:.0f} MB"
            )
            if args.freqtrade:
                ft = row["ft"]
                line += (
                    f" | freqtrade {row['ft_wall']:.2f} s (CPU {row['ft_cpu']:.2f} s) {row['ft_rss']:.0f} MB,"
                    f" loop {ft['loop_s']:.3f} s | {row['ft_wall'] / wall:.1f}x (CPU {row['ft_cpu'] / cpu:.1f}x),"
                    f" RSS {rss / row['ft_rss']:.2f},"
                    f" loop {ft['loop_s'] / simulation:.1f}x"
                )
            print(line, flush=True)

    def best(key: str) -> float:
        return min(row[key] for row in rounds)

    print(f"files: {len(files)}  candles: {candles}  {summary}")
    print(f"load (read, validate, build bars): {best('load'):.3f} s = {candles / best('load'):,.0f} candles/s")
    print(
        f"simulation:                        {best('simulation'):.3f} s = {candles / best('simulation'):,.0f} candles/s"
    )
    print(
        f"whole command (manage.py backtest): {best('wall'):.2f} s wall, {best('cpu'):.2f} s CPU, "
        f"peak RSS {max(r['rss'] for r in rounds):.0f} MB"
    )
    if args.freqtrade:
        loop = min(row["ft"]["loop_s"] for row in rounds)
        print(
            f"freqtrade {rounds[0]['ft'].get('freqtrade')} backtesting: {best('ft_wall'):.2f} s wall, "
            f"{best('ft_cpu'):.2f} s CPU, "
            f"peak RSS {best('ft_rss'):.0f} MB, loop {loop:.3f} s"
        )
        print(
            f"ratios, best against best: whole command {best('ft_wall') / best('wall'):.1f}x faster (target ≥ 8; "
            f"CPU seconds {best('ft_cpu') / best('cpu'):.1f}x), "
            f"peak RSS {max(r['rss'] for r in rounds) / best('ft_rss'):.2f} of Freqtrade's (target ≤ 0.5), "
            f"simulation {loop / best('simulation'):.1f}x faster than Freqtrade's loop (target ≥ 15)"
        )
    print(f"load average: {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")


if __name__ == "__main__":
    main()
