"""Loading the account as the risk engine sees it, at an event time (the shell around risk.engine.AccountState)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import connection

from cdb_project.raw_rows import fetch_rows
from cdb_project.timeutil import ms_to_datetime
from marketdata.ingest import latest_prices
from risk.engine import AccountState

from .models import Order, Portfolio, Position

MINUTE_MS = 60_000


class AccountRows(NamedTuple):
    """What the account is made of, as stored: the portfolio row, open positions, and PENDING orders folded in."""

    portfolio: Portfolio
    positions: dict[str, Position]
    quantities: dict[str, Decimal]  # positions plus approved, not yet executed orders
    cash: Decimal  # less what approved BUYs will spend
    receivable: Decimal  # what approved SELLs will bring in


def account_rows(*, lock: bool) -> AccountRows:
    portfolio = Portfolio.load(for_update=lock)
    positions = {p.symbol: p for p in fetch_rows(Position, '"quantity" > 0', order_by='"symbol"')}
    quantities = {symbol: p.quantity for symbol, p in positions.items()}
    cash, receivable = portfolio.cash, Decimal(0)
    slippage, fee = Decimal(settings.PAPER_SLIPPAGE_PCT), Decimal(settings.FEE_RATE)
    # Approved orders not yet executed count as done: two decisions in a row must not both spend the same room
    # nor sell the same units. A pending sell's proceeds are not cash yet, but they are still the account's.
    for order in fetch_rows(Order, '"status" = %s', [Order.Status.PENDING], order_by='"event_time" DESC, "id" DESC'):
        symbol, side, quantity, price = order.symbol, order.side, order.quantity, order.requested_price
        sign = 1 if side == "BUY" else -1
        quantities[symbol] = quantities.get(symbol, Decimal(0)) + sign * quantity
        if side == "BUY":
            cash -= quantity * price * (1 + slippage) * (1 + fee)
        else:
            receivable += quantity * price * (1 - slippage) * (1 - fee)
    return AccountRows(portfolio, positions, quantities, cash, receivable)


def day_rolls(portfolio: Portfolio, at_ms: int) -> bool:
    """The first event of a new UTC day: the day-start equity is to be set again."""
    return portfolio.day is None or ms_to_datetime(at_ms).date() > portfolio.day


def account_state(
    rows: AccountRows,
    trading_state: str,
    prices: dict[str, Decimal],
    *,
    orders_last_minute: int = 0,
    last_stop_ms: dict[str, int] | None = None,
) -> AccountState:
    return AccountState(
        trading_state=trading_state,
        cash=rows.cash,
        positions={symbol: quantity for symbol, quantity in rows.quantities.items() if quantity > 0},
        prices=prices,
        day_start_equity=rows.portfolio.day_start_equity,
        orders_last_minute=orders_last_minute,
        last_stop_ms=last_stop_ms or {},
        avg_entry={symbol: p.avg_entry_price for symbol, p in rows.positions.items()},
        receivable=rows.receivable,
    )


def decision_history(symbols: tuple[str, ...], at_ms: int) -> tuple[dict[str, int], int]:
    """What only an entry decision reads, in one query: the time of each symbol's last filled stop-loss (its
    cool-down) and the count of entries in the minute up to ``at_ms`` (the order rate limit)."""
    table = connection.ops.quote_name(Order._meta.db_table)
    filled = (Order.Status.FILLED, Order.Status.PARTIALLY_FILLED)
    in_symbols = ", ".join(["%s"] * len(symbols)) or "NULL"
    sql = (
        f"SELECT symbol, MAX(event_time) FROM {table} WHERE purpose = %s AND status IN (%s, %s) "  # noqa: S608
        f"AND symbol IN ({in_symbols}) GROUP BY symbol "
        f"UNION ALL SELECT NULL, COUNT(*) FROM {table} WHERE event_time > %s AND event_time <= %s AND purpose = %s"
    )
    params = [Order.Purpose.STOP_LOSS, *filled, *symbols, at_ms - MINUTE_MS, at_ms, Order.Purpose.ENTRY]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    last_stops = {symbol: int(latest) for symbol, latest in rows if symbol is not None}
    recent = next(int(count) for symbol, count in rows if symbol is None)
    return last_stops, recent


def load_account(
    trading_state: str,
    at_ms: int,
    extra_symbols: tuple[str, ...] = (),
    *,
    for_decision: bool = True,
    rows: AccountRows | None = None,
) -> AccountState:
    """Cash, positions (PENDING orders included) and last prices at ``at_ms``; rolls the day-start equity at 00:00 UTC.

    Call inside the transaction that holds the account lock: the day roll-over writes. ``for_decision=False``
    skips what only an entry decision reads (orders in the last minute, the last stop-loss times). ``rows``: the
    account rows, if the caller has just read them (``account_rows(lock=True)``).
    """
    if rows is None:
        rows = account_rows(lock=True)
    rolls = day_rolls(rows.portfolio, at_ms)
    prices = latest_prices({*rows.quantities, *extra_symbols}, at_ms)
    last_stops, recent = decision_history(extra_symbols, at_ms) if for_decision else ({}, 0)
    state = account_state(rows, trading_state, prices, orders_last_minute=recent, last_stop_ms=last_stops)
    if rolls:
        portfolio = rows.portfolio
        portfolio.day, portfolio.day_start_equity = ms_to_datetime(at_ms).date(), state.equity
        portfolio.save(update_fields=["day", "day_start_equity", "updated_at"])
        state = replace(state, day_start_equity=state.equity)
    return state
