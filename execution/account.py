"""Loading the account as the risk engine sees it, at an event time (the shell around risk.engine.AccountState)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import connection

from ground.raw_rows import fetch_rows, fetch_rows_with
from ground.timeutil import DAY_MS, MINUTE_MS, ms_to_datetime
from marketdata.ingest import latest_prices, latest_prices_query, prices_of_rows
from marketdata.validation import market_day
from risk.engine import AccountState, LotStop, fold_waiting

from .models import Order, Portfolio, Position, Trade


class AccountRows(NamedTuple):
    """What the account is made of, as stored: the portfolio row, open positions, and PENDING orders folded in."""

    portfolio: Portfolio
    positions: dict[str, Position]
    quantities: dict[str, Decimal]  # positions less what approved, not yet executed SELLs will sell
    cash: Decimal  # less what approved BUYs will spend
    receivable: Decimal  # what approved SELLs will bring in
    lots: dict[str, list[LotStop]]  # open trades and their stops by symbol, oldest first (read if asked for)
    entering: dict[str, Decimal]  # what approved, not yet executed BUYs will buy, by symbol
    entering_cost: Decimal  # what they are estimated to cost (out of ``cash``, still the account's)
    waiting: frozenset[str]  # symbols with PENDING orders (on paper: waiting for their symbol's next candle)

    def priced_symbols(self) -> set[str]:
        """The symbols the account is valued on: those held and those being entered."""
        return {symbol for symbol, quantity in self.quantities.items() if quantity > 0} | set(self.entering)


def account_rows(*, lock: bool, with_lots: bool = False) -> AccountRows:
    """The account's rows; ``with_lots``: with the open trades and their stops, which only the watch reads."""
    portfolio, pending = _portfolio_and_pending_count(lock)
    positions = {p.symbol: p for p in fetch_rows(Position, '"quantity" > 0', order_by='"symbol"')}
    quantities = {symbol: p.quantity for symbol, p in positions.items()}
    slippage, fee = Decimal(settings.PAPER_SLIPPAGE_PCT), Decimal(settings.FEE_RATE)
    pending_orders = (
        fetch_rows(Order, '"status" = %s', [Order.Status.PENDING], order_by='"event_time" DESC, "id" DESC')
        if pending
        else []
    )
    quantities, cash, receivable, entering, entering_cost = fold_waiting(
        quantities, portfolio.cash, pending_orders, slippage, fee
    )
    waiting = frozenset(order.symbol for order in pending_orders)
    lots = open_lots() if with_lots else {}
    return AccountRows(portfolio, positions, quantities, cash, receivable, lots, entering, entering_cost, waiting)


def open_lots() -> dict[str, list[LotStop]]:
    """The open trades by symbol, oldest first, each with its stop (``risk.engine.stop_price`` of its fill)."""
    lots: dict[str, list[LotStop]] = {}
    rows = Trade.objects.filter(status=Trade.Status.OPEN).order_by("entry_time", "id")
    for trade_id, symbol, quantity, stop in rows.values_list("trade_id", "symbol", "quantity", "stop_loss"):
        lots.setdefault(symbol, []).append(LotStop(trade_id, quantity, stop))
    return lots


def _portfolio_and_pending_count(lock: bool) -> tuple[Portfolio, int]:
    """The portfolio row (locked if ``lock``) and, from the same statement, how many orders are PENDING: mostly
    none (a paper order waits one candle, a live one the exchange's answer), and then they need no query.
    Under the account lock that count cannot change before the orders are read: every writer of an order's
    status holds it."""
    extra = (
        f"(SELECT COUNT(*) FROM {connection.ops.quote_name(Order._meta.db_table)} WHERE status = %s)",  # noqa: S608
        [Order.Status.PENDING],
    )
    rows = fetch_rows_with(Portfolio, extra, '"id" = 1', for_update=lock)
    if not rows:  # not created yet
        Portfolio.load()
        rows = fetch_rows_with(Portfolio, extra, '"id" = 1', for_update=lock)
    portfolio, pending = rows[0]
    return portfolio, int(pending)


def day_rolls(portfolio: Portfolio, at_ms: int) -> bool:
    """The first event of a new UTC day (``marketdata.validation.market_day``): the day-start equity is to be set
    again."""
    return portfolio.day is None or _day_of(at_ms) > portfolio.day


def _day_of(at_ms: int) -> date:
    return ms_to_datetime(market_day(at_ms) * DAY_MS).date()


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
        lots=rows.lots,
        receivable=rows.receivable,
        entering=rows.entering,
        entering_cost=rows.entering_cost,
    )


def decision_history(
    symbols: tuple[str, ...], at_ms: int, *, prices_of: Iterable[str] = ()
) -> tuple[dict[str, int], int, dict[str, Decimal]]:
    """What only an entry decision reads, in one query: the time of each symbol's last filled stop-loss (its
    cool-down) and the count of entries in the minute up to ``at_ms`` (the order rate limit) — and, in the same
    query, the ``latest_prices`` of ``prices_of`` at ``at_ms``."""
    table = connection.ops.quote_name(Order._meta.db_table)
    filled = (Order.Status.FILLED, Order.Status.PARTIALLY_FILLED)
    in_symbols = ", ".join(["%s"] * len(symbols)) or "NULL"
    sql = (
        f"SELECT 's', symbol, MAX(event_time) FROM {table} WHERE purpose = %s AND status IN (%s, %s) "  # noqa: S608
        f"AND symbol IN ({in_symbols}) GROUP BY symbol "
        f"UNION ALL SELECT 'n', NULL, COUNT(*) FROM {table} WHERE event_time > %s AND event_time <= %s "
        "AND purpose = %s"
    )
    params = [Order.Purpose.STOP_LOSS, *filled, *symbols, at_ms - MINUTE_MS, at_ms, Order.Purpose.ENTRY]
    priced = sorted(set(prices_of))
    if priced:
        prices_sql, prices_params = latest_prices_query(priced, at_ms)
        sql += f" UNION ALL SELECT 'p', p.* FROM ({prices_sql}) AS p"
        params += prices_params
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    last_stops = {symbol: int(value) for kind, symbol, value in rows if kind == "s"}
    recent = next(int(value) for kind, _symbol, value in rows if kind == "n")
    prices = prices_of_rows((symbol, value) for kind, symbol, value in rows if kind == "p")
    return last_stops, recent, prices


def load_account(
    trading_state: str,
    at_ms: int,
    extra_symbols: tuple[str, ...] = (),
    *,
    for_decision: bool = True,
    rows: AccountRows | None = None,
    with_lots: bool = False,
) -> AccountState:
    """Cash, positions (PENDING SELLs taken out, PENDING BUYs not yet in) and last prices at ``at_ms``; rolls the
    day-start equity at 00:00 UTC.

    Call inside the transaction that holds the account lock: the day roll-over writes. ``for_decision=False``
    skips what only an entry decision reads (orders in the last minute, the last stop-loss times). ``rows``: the
    account rows, if the caller has just read them (``account_rows(lock=True)``).
    """
    if rows is None:
        rows = account_rows(lock=True, with_lots=with_lots)
    rolls = day_rolls(rows.portfolio, at_ms)
    priced = {*rows.quantities, *rows.entering, *extra_symbols}
    if for_decision:
        last_stops, recent, prices = decision_history(extra_symbols, at_ms, prices_of=priced)
    else:
        last_stops, recent, prices = {}, 0, latest_prices(priced, at_ms)
    state = account_state(rows, trading_state, prices, orders_last_minute=recent, last_stop_ms=last_stops)
    if rolls:  # the day starts at the equity valued at the last prices before 00:00 UTC: the candles known by then
        before = latest_prices(priced, market_day(at_ms) * DAY_MS)
        start = account_state(rows, trading_state, {**prices, **before}).equity
        portfolio = rows.portfolio
        portfolio.day, portfolio.day_start_equity = _day_of(at_ms), start
        portfolio.save(update_fields=["day", "day_start_equity", "updated_at"])
        state = replace(state, day_start_equity=start)
    return state
