"""One trial: one backtest of a parameter set over a window of candles, scored by the objective.

``Problem`` carries everything a backtest depends on (files, strategy, the base risk parameters, sizing, capital,
the paper exchange's settings), resolved once by the command and sent with every trial, so a worker whose
environment differs still runs exactly the backtest the study asked for — and ``manage.py backtest`` with the
same parameters gives the same figures (``backtest_command`` prints it).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from execution.paper import PaperExchange
from ground.amounts import counted
from risk.parameters import PARAMETER_SPECS
from trading.backtest import Backtest, Result, watched_series
from trading.backtest_report import summary
from trading.strategies import build_strategy

from . import data_cache
from .objectives import objective_value
from .space import SIZING

DEFAULT_SIZE_PCT = Decimal("0.10")  # settings.POSITION_SIZE_PCT's default
EQUITY_POINTS = 300  # the trial's equity curve, thinned, kept with its figures (the report plots the best one's)


@dataclass(frozen=True)
class Problem:
    files: list[str]
    strategy: str
    strategy_params: dict[str, str]  # fixed strategy parameters (from a "name:key=value" spec)
    risk: dict[str, str]  # every SPEC §4 parameter, as text
    size_pct: str
    capital: str
    slippage_pct: str
    fee_rate: str
    max_volume_share: str
    paper_seed: int
    whitelist: list[str] = field(default_factory=list)
    objective: str = "sharpe"
    min_trades: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Problem:
        return cls(**data)


def _strategy_params(problem: Problem, params: dict) -> dict[str, str]:
    """The strategy's parameters as `backtest --param` passes them (text), the trial's over the fixed ones."""
    searched = {k: str(v) for k, v in params.items() if k not in PARAMETER_SPECS and k != SIZING}
    return {**problem.strategy_params, **searched}


def check_params(problem: Problem, params: dict) -> str | None:
    """Why the strategy refuses this combination (e.g. ema_fast not below ema_slow), or None."""
    try:
        build_strategy(problem.strategy, **_strategy_params(problem, params))
    except ValueError as error:
        return str(error)
    return None


def least_warmup(problem: Problem, lows: dict) -> int | None:
    """The strategy's warm-up at the searched strategy parameters' lows (a warm-up grows with its periods): fewer
    candles than this and no trial can ever signal. None: the strategy refuses those values together."""
    for params in (lows, {}):  # the lows refused together (ema_fast ≥ ema_slow): the fixed and default values
        try:
            return build_strategy(problem.strategy, **_strategy_params(problem, params)).warmup
        except ValueError:
            continue
    return None


def run_backtest(problem: Problem, params: dict, start: int | None, end: int | None) -> Result:
    """The backtest `manage.py backtest` runs for these parameters and this window, on the cached candles."""
    strategy_params = _strategy_params(problem, params)
    risk = {name: Decimal(value) for name, value in problem.risk.items()}
    for name, value in params.items():
        if name in PARAMETER_SPECS:
            risk[name] = PARAMETER_SPECS[name].check(str(value))
    size_pct = Decimal(str(params[SIZING])) if SIZING in params else Decimal(problem.size_pct)
    exchange = PaperExchange(
        slippage_pct=Decimal(problem.slippage_pct),
        fee_rate=Decimal(problem.fee_rate),
        failure_rate=Decimal(0),
        seed=problem.paper_seed,
        max_volume_share=Decimal(problem.max_volume_share),
    )
    backtest = Backtest(
        lambda: build_strategy(problem.strategy, **strategy_params),
        risk,
        Decimal(problem.capital),
        exchange,
        size_pct,
        whitelist=frozenset(problem.whitelist),
    )
    candles = data_cache.candles(problem.files)
    backtest.watched = watched_series(candles.series, problem.whitelist)  # as the backtest command runs it
    return backtest.run(candles.window(start, end))


def evaluate(problem: Problem, params: dict, start: int | None, end: int | None) -> dict:
    """The trial's figures: ``value`` (None: pruned, ``pruned`` says why), trades, max drawdown, duration, the
    first and last candle time the backtest saw, and its equity curve thinned to EQUITY_POINTS."""
    started = time.perf_counter()
    result = run_backtest(problem, params, start, end)
    if result.candles == 0:  # not a pruned trial: the study's candles are gone (a data file changed under it)
        raise ValueError("no candles in the trial's files and window (a data file changed under the study?)")
    figures = summary(result)
    value = objective_value(problem.objective, figures, result.equity_curve)
    pruned = None
    if figures["trades"] < problem.min_trades:
        pruned = f"{counted(figures['trades'], 'trade')}, fewer than --min-trades {problem.min_trades}"
    elif value is None:
        pruned = f"{problem.objective} undefined (no variation or no drawdown)"
    curve = result.equity_curve
    # the candles it saw, by their open time (the fold's bounds; the curve's times are the candles' closes)
    opens = [bar.row.timestamp for bar in data_cache.candles(problem.files).window(start, end)]
    return {
        "value": value,
        "pruned": pruned,
        "trades": figures["trades"],
        "max_drawdown_pct": figures["max_drawdown_pct"],
        "total_return_pct": figures["total_return_pct"],
        "sharpe": figures["sharpe"],
        "warnings": figures["warnings"],  # as `manage.py backtest` prints them (a capital too large, …)
        "candles": result.candles,
        "first_candle": min(opens) if opens else None,
        "last_candle": max(opens) if opens else None,
        "duration": time.perf_counter() - started,
        "equity": [[ts, str(equity)] for ts, equity in thin(curve, EQUITY_POINTS)],
    }


def thin(curve: list, points: int) -> list:
    """At most ``points`` + 1 points of a curve, evenly spaced, the last one kept."""
    if len(curve) <= points:
        return list(curve)
    step = len(curve) / points
    return [curve[int(i * step)] for i in range(points)] + [curve[-1]]


def iso(ms: int) -> str:
    """An epoch-ms time as `backtest --from/--to` reads it (UTC)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}" if ms % 1000 else "")


def backtest_command(problem: Problem, params: dict, start: int | None, end: int | None) -> str:
    """The one-line `manage.py backtest` that reruns this trial."""
    args = ["python", "manage.py", "backtest", "--data", *problem.files, "--strategy", problem.strategy]
    args += ["--capital", problem.capital]
    # the risk parameters and sizing where they differ from SPEC §4's defaults (what a default environment seeds)
    fixed = {k: v for k, v in problem.risk.items() if Decimal(v) != PARAMETER_SPECS[k].default}
    if Decimal(problem.size_pct) != DEFAULT_SIZE_PCT:
        fixed[SIZING] = problem.size_pct
    for name, value in {**problem.strategy_params, **fixed, **params}.items():
        args += ["--param", f"{name}={value}"]
    if start is not None:
        args += ["--from", iso(start)]
    if end is not None:
        args += ["--to", iso(end)]
    return shlex.join(args)
