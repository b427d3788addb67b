"""The risk status report shared by `manage.py risk_status`, the API and the dashboard."""

from __future__ import annotations

from django.conf import settings

from execution.models import Position
from ground.amounts import plain
from marketdata.clock import now_ms
from marketdata.ingest import latest_price
from marketdata.watchlist import account_quote

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
                "quantity": plain(position.quantity),
                "avg_entry_price": plain(position.avg_entry_price),
                "last_price": plain(price),
                "value": plain(value),
                "unrealized_pnl": plain((price - position.avg_entry_price) * position.quantity),
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
        "quote": account_quote(),
        "cash": plain(portfolio.cash),
        "equity": plain(equity),
        "exposure": plain(exposure),
        "exposure_pct": plain(round(exposure / equity, 12) if equity > 0 else 0),
        "day_start_equity": plain(start),
        "daily_drawdown_pct": plain(round(drawdown, 12)),
        "open_positions": positions,
        "warnings": [seed.warning for seed in seeds.values() if seed.warning],
    }
