"""The daily report's figures: the account summary /api/status/ shows (``risk.status.account_summary``, the one
account view) and the trading state, plus the day's closed trades and win rate."""

from __future__ import annotations

from execution.live import live_trading_enabled
from execution.models import Trade
from ground.timeutil import ms_to_datetime
from marketdata import clock
from risk.account_view import day_start_ms
from risk.models import TradingState
from risk.status import account_summary


def daily_report(as_of_ms: int | None = None) -> dict:
    """Figures for the UTC day that contains ``as_of_ms`` (market time; default now), up to that moment."""
    as_of = clock.now_ms() if as_of_ms is None else as_of_ms
    account = account_summary(as_of_ms)  # None: now, at the newest prices, as /api/status/ shows it
    state = TradingState.load()
    day_start = ms_to_datetime(day_start_ms(as_of))
    closed = Trade.objects.filter(
        status=Trade.Status.CLOSED, exit_time__gte=day_start, exit_time__lte=ms_to_datetime(as_of)
    )
    results = list(closed.values_list("profit_loss", flat=True))
    wins = sum(1 for pnl in results if pnl is not None and pnl > 0)
    return {
        "day": day_start.date().isoformat(),
        "as_of_ms": as_of,
        "mode": "LIVE" if live_trading_enabled() else "PAPER",
        "trading_state": state.state,
        "reason": state.reason if state.state != TradingState.State.ACTIVE else "",
        "quote": account["quote"],
        "equity": account["equity"],
        "daily_pnl": account["daily_pnl"],
        "daily_pnl_pct": account["daily_pnl_pct"],
        "drawdown_pct": account["drawdown_pct"],
        "drawdown_limit_pct": account["drawdown_limit_pct"],
        "open_positions": account["open_positions"],
        "trades": len(results),
        "wins": wins,
        "win_rate": wins / len(results) if results else 0.0,
    }


def previous_day_end(now_ms: int) -> int:
    """The last millisecond of the day before the one containing ``now_ms`` (the scheduled report at 00:00 UTC is
    about the day that just ended)."""
    return day_start_ms(now_ms) - 1
