"""The account, one view of it: the stored ledger (execution's portfolio, positions and PENDING orders) read into
the risk engine's ``AccountState`` by one function (``account_state``), and valued by it.

Everyone who shows or judges the account reads it here, so there is one definition of equity, daily P&L and
drawdown: the engine and the market watch (``load_account``, ``account_rows``), ``risk_status`` and ``/metrics``,
the dashboard and ``/api/status/`` (``risk.status.account_summary``) and the daily report (``account_view``).

- **equity**: ``AccountState.equity``: cash, plus the held quantities at their last prices, plus what approved,
  not yet executed orders keep in it (a waiting SELL's proceeds, a waiting BUY's estimated cost);
- **day start**: the equity of the account at the last prices known by 00:00 UTC, set by the first event of the
  day (``load_account``); until then (``account_view``), what that event will set;
- **daily P&L**: equity − day start; **drawdown**: the loss as a share of the day start, 0 when up
  (``AccountState.daily_drawdown``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import connection

from execution.models import Order, Portfolio, Position, Trade
from ground.prepared import Prepared
from ground.raw_rows import fetch_singleton_rows
from ground.timeutil import DAY_MS, MINUTE_MS, ms_to_datetime
from marketdata import clock
from marketdata.ingest import latest_prices, latest_prices_query, prices_of_rows
from marketdata.validation import market_day

from .engine import AccountState, LotStop, fold_waiting
from .models import AccountVersion


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


class KnownRows(NamedTuple):
    """Account rows read without the lock (``account_rows(lock=False)``) after the account's version ``version``
    was read (``AccountVersion``): they are the account's rows as long as its version is still ``version``."""

    version: int
    rows: AccountRows


def account_rows(*, lock: bool, with_lots: bool = False) -> AccountRows:
    """The account's rows; ``with_lots``: with the open trades and their stops, which only the watch reads."""
    portfolio, pending = _portfolio_and_pending_count(lock)
    positions = {p.symbol: p for p in _open_positions()}
    return rows_of(portfolio, positions, pending, with_lots=with_lots)


def rows_of(
    portfolio: Portfolio,
    positions: dict[str, Position],
    count: int,
    *,
    with_lots: bool = False,
    pending: list[Order] | None = None,
) -> AccountRows:
    """The account's rows from its portfolio and open positions as read (or as the caller holds them), and how
    many orders are PENDING (``count``: they are read only if any; ``pending``: the PENDING orders, newest first,
    if the caller holds them)."""
    quantities = {symbol: p.quantity for symbol, p in positions.items()}
    slippage, fee = Decimal(settings.PAPER_SLIPPAGE_PCT), Decimal(settings.FEE_RATE)
    pending_orders = pending if pending is not None else _pending_orders() if count else []
    quantities, cash, receivable, entering, entering_cost = fold_waiting(
        quantities, portfolio.cash, pending_orders, slippage, fee
    )
    waiting = frozenset(order.symbol for order in pending_orders)
    lots = open_lots() if with_lots else {}
    return AccountRows(portfolio, positions, quantities, cash, receivable, lots, entering, entering_cost, waiting)


_open_positions = Prepared(lambda: Position.objects.filter(quantity__gt=0).order_by("symbol"))
_pending_orders = Prepared(lambda: Order.objects.filter(status=Order.Status.PENDING).order_by("-event_time", "-id"))
_open_lots = Prepared(
    lambda: (
        Trade.objects.filter(status=Trade.Status.OPEN)
        .order_by("entry_time", "id")
        .values_list("trade_id", "symbol", "quantity", "stop_loss")
    )
)


def open_lots() -> dict[str, list[LotStop]]:
    """The open trades by symbol, oldest first, each with its stop (``risk.engine.stop_price`` of its fill)."""
    lots: dict[str, list[LotStop]] = {}
    for trade_id, symbol, quantity, stop in _open_lots():
        lots.setdefault(symbol, []).append(LotStop(trade_id, quantity, stop))
    return lots


def _portfolio_and_pending_count(lock: bool) -> tuple[Portfolio, int]:
    """The portfolio row (locked if ``lock``) and, from the same statement, how many orders are PENDING: mostly
    none (a paper order waits one candle, a live one the exchange's answer), and then they need no query.
    Under the account lock that count cannot change before the orders are read: every writer of an order's
    status holds it."""
    found = fetch_singleton_rows((Portfolio,), locked=(Portfolio,) if lock else (), extra=[pending_count()])
    if found is None:  # not created yet
        Portfolio.load()
        found = fetch_singleton_rows((Portfolio,), locked=(Portfolio,) if lock else (), extra=[pending_count()])
    portfolio, pending = found
    return portfolio, int(pending)


def pending_count() -> tuple[str, list]:
    """How many orders are PENDING, as an SQL expression and its parameters (``fetch_singleton_rows``'s extra)."""
    table = connection.ops.quote_name(Order._meta.db_table)
    return f"(SELECT COUNT(*) FROM {table} WHERE status = %s)", [Order.Status.PENDING]  # noqa: S608


def day_rolls(portfolio: Portfolio, at_ms: int) -> bool:
    """The first event of a new UTC day (``marketdata.validation.market_day``): the day-start equity is to be set
    again."""
    return portfolio.day is None or _day_of(at_ms) > portfolio.day


def _day_of(at_ms: int) -> date:
    return ms_to_datetime(day_start_ms(at_ms)).date()


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
    symbols: tuple[str, ...], at_ms: int, *, prices_of: Iterable[str] = (), with_version: bool = False
) -> tuple[dict[str, int], int, dict[str, Decimal], int | None]:
    """What only an entry decision reads, in one query: the time of each symbol's last filled stop-loss (its
    cool-down) and the count of entries in the minute up to ``at_ms`` (the order rate limit) — and, in the same
    query, the ``latest_prices`` of ``prices_of`` at ``at_ms`` and, ``with_version``, the account's version
    (``AccountVersion``; else None)."""
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
    if with_version:
        version_table = connection.ops.quote_name(AccountVersion._meta.db_table)
        sql += f' UNION ALL SELECT \'v\', NULL, "version" FROM {version_table} WHERE "id" = 1'  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    last_stops = {symbol: int(value) for kind, symbol, value in rows if kind == "s"}
    recent = next(int(value) for kind, _symbol, value in rows if kind == "n")
    prices = prices_of_rows((symbol, value) for kind, symbol, value in rows if kind == "p")
    version = next((int(value) for kind, _symbol, value in rows if kind == "v"), None)
    return last_stops, recent, prices, version


def load_account(
    trading_state: str,
    at_ms: int,
    extra_symbols: tuple[str, ...] = (),
    *,
    for_decision: bool = True,
    rows: AccountRows | None = None,
    with_lots: bool = False,
    known: KnownRows | None = None,
) -> AccountState:
    """Cash, positions (PENDING SELLs taken out, PENDING BUYs not yet in) and last prices at ``at_ms``; rolls the
    day-start equity at 00:00 UTC.

    Call inside the transaction that holds the account lock: the day roll-over writes. ``for_decision=False``
    skips what only an entry decision reads (orders in the last minute, the last stop-loss times). ``rows``: the
    account rows, if the caller has just read them (``account_rows(lock=True)``). ``known``: a decision's rows as
    the market watch read them before it, with their version: used when the version read under the lock (with the
    decision's history, ``decision_history``) is still theirs, else the rows are read again.
    """
    if rows is None and known is not None and for_decision and not day_rolls(known.rows.portfolio, at_ms):
        rows = known.rows._replace(lots={})  # a decision does not read the open lots
        priced = {*rows.quantities, *rows.entering, *extra_symbols}
        last_stops, recent, prices, version = decision_history(
            extra_symbols, at_ms, prices_of=priced, with_version=True
        )
        if version is not None and version == known.version:
            return account_state(rows, trading_state, prices, orders_last_minute=recent, last_stop_ms=last_stops)
        rows = None  # changed since the watch read it
    if rows is None:
        rows = account_rows(lock=True, with_lots=with_lots)
    rolls = day_rolls(rows.portfolio, at_ms)
    priced = {*rows.quantities, *rows.entering, *extra_symbols}
    if for_decision:
        last_stops, recent, prices, _ = decision_history(extra_symbols, at_ms, prices_of=priced)
    else:
        last_stops, recent, prices = {}, 0, latest_prices(priced, at_ms)
    state = account_state(rows, trading_state, prices, orders_last_minute=recent, last_stop_ms=last_stops)
    if rolls:
        start = day_start_equity(rows, prices, at_ms, priced)
        portfolio = rows.portfolio
        portfolio.day, portfolio.day_start_equity = _day_of(at_ms), start
        portfolio.save(update_fields=["day", "day_start_equity", "updated_at"])
        state = replace(state, day_start_equity=start)
    return state


def day_start_ms(at_ms: int) -> int:
    """00:00 UTC of the market day (``marketdata.validation.market_day``) that holds ``at_ms``."""
    return market_day(at_ms) * DAY_MS


def day_start_equity(
    rows: AccountRows, prices: dict[str, Decimal], at_ms: int, symbols: Iterable[str] | None = None
) -> Decimal:
    """The day's start as the day's first event sets it: the account as it is, at the last prices known by 00:00
    UTC of ``at_ms``'s day (a symbol without a candle by then: at ``prices``). ``symbols``: those to price (default
    ``rows.priced_symbols()``)."""
    before = latest_prices(rows.priced_symbols() if symbols is None else symbols, day_start_ms(at_ms))
    return account_state(rows, "", {**prices, **before}).equity


NEWEST = 2**63 - 1  # a market time after every candle: their newest prices


@dataclass(frozen=True)
class AccountView:
    """The account at a market time as it is shown and reported: the engine's ``AccountState`` (``account``, its
    ``day_start_equity`` always set) with the stored rows it was built from."""

    account: AccountState
    rows: AccountRows
    day_start_ms: int  # 00:00 UTC of the day the daily P&L and drawdown are measured in

    @property
    def equity(self) -> Decimal:
        return self.account.equity

    @property
    def day_start_equity(self) -> Decimal:
        return self.account.day_start_equity

    @property
    def daily_pnl(self) -> Decimal:
        return self.account.equity - self.account.day_start_equity

    @property
    def daily_pnl_pct(self) -> Decimal:
        """The daily P&L as a share of the day start (0 without a positive start)."""
        start = self.account.day_start_equity
        return self.daily_pnl / start if start > 0 else Decimal(0)

    @property
    def drawdown(self) -> Decimal:
        return self.account.daily_drawdown

    @property
    def exposure(self) -> Decimal:
        return self.account.exposure

    @property
    def exposure_pct(self) -> Decimal:
        """The exposure as a share of the equity (0 without a positive equity)."""
        equity = self.account.equity
        return self.account.exposure / equity if equity > 0 else Decimal(0)

    @property
    def open_positions(self) -> list[Position]:
        """The stored open positions, by symbol."""
        return list(self.rows.positions.values())

    def price(self, symbol: str) -> Decimal | None:
        return self.account.prices.get(symbol)


def account_view(trading_state: str, at_ms: int | None = None) -> AccountView:
    """The account at the market time ``at_ms`` (None: now, at the newest stored prices, in the market clock's
    day), read without the lock and without writing: the day's start is the stored one when it is of that day, else
    the one the day's first event will set (``day_start_equity``). A day before the stored one (a report on a past
    day) starts from the account as it is now at that day's opening prices: the ledger keeps only today's start."""
    rows = account_rows(lock=False)
    if at_ms is None:
        day, prices_at = clock.now_ms(), NEWEST
    else:
        day, prices_at = at_ms, at_ms
    prices = latest_prices(rows.priced_symbols(), prices_at)
    account = account_state(rows, trading_state, prices)
    portfolio = rows.portfolio
    if portfolio.day == _day_of(day) and portfolio.day_start_equity is not None:
        start = portfolio.day_start_equity
    else:
        start = day_start_equity(rows, prices, day)
    return AccountView(replace(account, day_start_equity=start), rows, day_start_ms(day))
