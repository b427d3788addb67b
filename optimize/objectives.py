"""What a trial maximises, from a backtest's summary and equity curve (trading/backtest_report.py). Pure.

* ``profit`` — total return in %;
* ``sharpe`` — the report's annualised Sharpe ratio of the per-candle returns;
* ``sortino`` — the same with the downside deviation (root mean square of the negative returns) instead;
* ``calmar`` — total return % over the max drawdown %.

``None`` where the figure is undefined (no variation, no drawdown): such a trial is pruned, not scored.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from decimal import Decimal

YEAR_MS = 365 * 24 * 3600 * 1000
OBJECTIVES = ("sharpe", "profit", "calmar", "sortino")


def _sortino(curve: Sequence[tuple[int, Decimal]]) -> float | None:
    """As the report's ``_sharpe`` (returns between equity points, annualised by the median step), but over the
    downside deviation."""
    if len(curve) < 3:
        return None
    returns = [float(b / a - 1) for (_, a), (_, b) in zip(curve, curve[1:], strict=False) if a > 0]
    downside = math.sqrt(statistics.fmean([min(r, 0.0) ** 2 for r in returns])) if returns else 0.0
    if downside == 0:
        return None
    step = statistics.median(b - a for (a, _), (b, _) in zip(curve, curve[1:], strict=False)) or 1
    return statistics.fmean(returns) / downside * math.sqrt(YEAR_MS / step)


def objective_value(objective: str, summary: dict, curve: Sequence[tuple[int, Decimal]]) -> float | None:
    if objective == "profit":
        return summary["total_return_pct"]
    if objective == "sharpe":
        return summary["sharpe"]
    if objective == "calmar":
        drawdown = summary["max_drawdown_pct"]
        return summary["total_return_pct"] / drawdown if drawdown > 0 else None
    if objective == "sortino":
        return _sortino(curve)
    raise ValueError(f"unknown objective {objective!r}; one of {', '.join(OBJECTIVES)}")
