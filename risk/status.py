"""The risk status report shared by `manage.py risk_status`, the API and the dashboard."""

from __future__ import annotations

from django.conf import settings

from cdb_project.timeutil import now_ms
from execution.models import Position
from marketdata.ingest import latest_price

from .models import RiskParameters, TradingState
from .parameters import PARAMETER_SPECS
from .state import state_snapshot


def risk_status() -> dict:
    """State, every parameter with its value and source, exposure, daily drawdown and open positions."""
    from execution.models import Portfolio

    state = TradingState.load()
    params = RiskParameters.load()
    portfolio = Portfolio.load()
    positions = []
    exposure = 0
    for position in Position.objects.filter(quantity__gt=0):
        price = latest_price(position.symbol) or position.avg_entry_price
        value = position.quantity * price
        exposure += value
        positions.append(
            {
                "symbol": position.symbol,
                "quantity": str(position.quantity),
                "avg_entry_price": str(position.avg_entry_price),
                "last_price": str(price),
                "value": str(value),
                "unrealized_pnl": str((price - position.avg_entry_price) * position.quantity),
            }
        )
    equity = portfolio.cash + exposure
    start = portfolio.day_start_equity
    drawdown = max(0, (start - equity) / start) if start and start > 0 else 0
    seeds = settings.RISK_PARAMETER_SEEDS
    parameters = {}
    for name, spec in PARAMETER_SPECS.items():
        parameters[name] = {
            "value": str(getattr(params, name.lower())),
            "source": (params.sources or {}).get(name, seeds[name].source),
            "default": str(spec.default),
            "range": [str(spec.minimum), str(spec.maximum)],
        }
        if seeds[name].warning:
            parameters[name]["warning"] = seeds[name].warning
    from execution.live import live_trading_enabled

    return {
        **state_snapshot(state),
        "mode": "LIVE" if live_trading_enabled() else "PAPER",
        "generated_at": now_ms(),
        "parameters": parameters,
        "cash": str(portfolio.cash),
        "equity": str(equity),
        "exposure": str(exposure),
        "exposure_pct": str(exposure / equity if equity > 0 else 0),
        "day_start_equity": str(start) if start is not None else None,
        "daily_drawdown_pct": str(drawdown),
        "open_positions": positions,
        "warnings": [seed.warning for seed in seeds.values() if seed.warning],
    }
