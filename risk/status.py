"""The account and risk reports: ``risk_status`` (``manage.py risk_status``, ``/metrics``) and ``account_summary``
(the dashboard, ``/api/status/``, the daily report), both from the one account view (``risk.account_view``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction

from execution.models import Portfolio
from ground.amounts import decimals_for, plain
from ground.timeutil import iso_z, ms_to_datetime
from marketdata.clock import now_ms
from marketdata.watchlist import account_quote

from .account_view import AccountView, account_view
from .models import RiskParameters, TradingState
from .parameters import PARAMETER_SPECS
from .state import state_snapshot

RATIO_PLACES = Decimal("1e-12")


def ratio(value: Decimal) -> str:
    """A share as an exact decimal string to 12 places (0.0123 = 1.23 %)."""
    return plain(value.quantize(RATIO_PLACES))


def open_position_rows(view: AccountView) -> list[dict]:
    """Each open position with its last price (None without a candle), value and unrealized P&L."""
    out = []
    for position in view.open_positions:
        price = view.price(position.symbol)
        cost = position.avg_entry_price * position.quantity
        unrealized = (price - position.avg_entry_price) * position.quantity if price is not None else None
        out.append(
            {
                "symbol": position.symbol,
                "quantity": plain(position.quantity),
                "avg_entry_price": plain(position.avg_entry_price),
                "last_price": plain(price),
                "value": plain(position.quantity * price) if price is not None else None,
                "unrealized_pnl": plain(unrealized),
                "unrealized_pnl_pct": ratio(unrealized / cost) if unrealized is not None and cost else None,
            }
        )
    return out


@contextmanager
def one_snapshot() -> Iterator[None]:
    """Every read inside sees the database at one moment, so the cash, the positions, the orders waiting and the
    state read in several statements are of one account (a fill committed between two of them would count its cost
    twice or not at all): one transaction, REPEATABLE READ on PostgreSQL (where each statement of a READ COMMITTED
    transaction sees its own moment); a SQLite transaction reads one snapshot already. Inside a transaction already
    (a test's), that one."""
    if connection.in_atomic_block:
        yield
        return
    # The one-row tables first, outside it: a row another request creates once the snapshot has begun is invisible
    # in it, so creating it inside would meet the unique key and fail to read the row back (a new database's first
    # concurrent /api/status/ requests).
    TradingState.load_with_parameters()
    Portfolio.load()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def risk_status() -> dict:
    """State, every parameter with its value and source, equity, daily P&L and drawdown, exposure and the open
    positions, all read at one moment (``one_snapshot``)."""
    with one_snapshot():
        return _risk_status()


def _risk_status() -> dict:
    state = TradingState.load()
    params = RiskParameters.load()
    view = account_view(state.state)
    seeds = settings.RISK_PARAMETER_SEEDS
    parameters = {}
    for name, spec in PARAMETER_SPECS.items():
        parameters[name] = {
            "value": plain(getattr(params, name.lower())),  # as /api/risk/parameters/ gives it: "0.05", "30"
            "source": (params.sources or {}).get(name, seeds[name].source),
            "default": plain(spec.default),
            "range": [plain(spec.minimum), plain(spec.maximum)],
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
        "cash": plain(view.rows.portfolio.cash),
        "equity": plain(view.equity),
        "exposure": plain(view.exposure),
        "exposure_pct": ratio(view.exposure_pct),
        "day_start_equity": plain(view.day_start_equity),
        "daily_pnl": plain(view.daily_pnl),
        "daily_drawdown_pct": ratio(view.drawdown),
        "open_positions": open_position_rows(view),
        "warnings": [seed.warning for seed in seeds.values() if seed.warning],
    }


def account_summary(as_of_ms: int | None = None) -> dict:
    """Equity, cash, daily P&L and drawdown since 00:00 UTC (market time), exposure and their limits, at the market
    time ``as_of_ms`` (None: now, at the newest prices), read at one moment (``one_snapshot``)."""
    with one_snapshot():
        return _account_summary(as_of_ms)


def _account_summary(as_of_ms: int | None) -> dict:
    view = account_view(TradingState.load().state, as_of_ms)
    params = RiskParameters.load()
    portfolio = view.rows.portfolio
    quote = account_quote()
    return {
        "quote": quote,
        "quote_decimals": decimals_for(quote),
        "initial_capital": plain(portfolio.initial_capital),
        "cash": plain(portfolio.cash),
        "equity": plain(view.equity),
        "realized_pnl": plain(portfolio.realized_pnl),
        "fees_paid": plain(portfolio.fees_paid),
        "day_start": iso_z(ms_to_datetime(view.day_start_ms)),
        "day_start_equity": plain(view.day_start_equity),
        "daily_pnl": plain(view.daily_pnl),
        "daily_pnl_pct": ratio(view.daily_pnl_pct),
        "drawdown_pct": ratio(view.drawdown),
        "drawdown_limit_pct": plain(params.max_daily_drawdown_pct),
        "exposure": plain(view.exposure),
        "exposure_pct": ratio(view.exposure_pct),
        "exposure_limit_pct": plain(params.max_exposure_pct),
        "open_positions": len(view.rows.positions),
    }
