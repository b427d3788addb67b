"""Loading the account as the risk engine sees it, at an event time (the shell around risk.engine.AccountState)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from django.conf import settings

from cdb_project.timeutil import ms_to_datetime
from marketdata.ingest import latest_price
from risk.engine import AccountState

from .models import Order, Portfolio, Position

MINUTE_MS = 60_000


def load_account(trading_state: str, at_ms: int, extra_symbols: tuple[str, ...] = ()) -> AccountState:
    """Cash, positions (PENDING orders included) and last prices at ``at_ms``; rolls the day-start equity at 00:00 UTC.

    Call inside the transaction that holds the account lock: the day roll-over writes.
    """
    portfolio = Portfolio.load(for_update=True)
    positions = {p.symbol: p for p in Position.objects.filter(quantity__gt=0)}
    quantities = {symbol: p.quantity for symbol, p in positions.items()}
    cash, receivable = portfolio.cash, Decimal(0)
    slippage, fee = Decimal(settings.PAPER_SLIPPAGE_PCT), Decimal(settings.FEE_RATE)
    # Approved orders not yet executed count as done: two decisions in a row must not both spend the same room
    # nor sell the same units. A pending sell's proceeds are not cash yet, but they are still the account's.
    for order in Order.objects.filter(status=Order.Status.PENDING).only(
        "symbol", "side", "quantity", "requested_price"
    ):
        sign = 1 if order.side == "BUY" else -1
        quantities[order.symbol] = quantities.get(order.symbol, Decimal(0)) + sign * order.quantity
        if order.side == "BUY":
            cash -= order.quantity * order.requested_price * (1 + slippage) * (1 + fee)
        else:
            receivable += order.quantity * order.requested_price * (1 - slippage) * (1 - fee)
    prices = {}
    for symbol in {*quantities, *extra_symbols}:
        price = latest_price(symbol, at_ms)
        if price is not None:
            prices[symbol] = price
    last_stops = {}
    for symbol in extra_symbols:
        stop = (
            Order.objects.filter(
                symbol=symbol,
                purpose=Order.Purpose.STOP_LOSS,
                status__in=(Order.Status.FILLED, Order.Status.PARTIALLY_FILLED),
            )
            .order_by("-event_time")
            .values_list("event_time", flat=True)
            .first()
        )
        if stop is not None:
            last_stops[symbol] = stop
    state = AccountState(
        trading_state=trading_state,
        cash=cash,
        positions={symbol: quantity for symbol, quantity in quantities.items() if quantity > 0},
        prices=prices,
        day_start_equity=portfolio.day_start_equity,
        orders_last_minute=Order.objects.filter(
            event_time__gt=at_ms - MINUTE_MS, event_time__lte=at_ms, purpose=Order.Purpose.ENTRY
        ).count(),
        last_stop_ms=last_stops,
        avg_entry={symbol: p.avg_entry_price for symbol, p in positions.items()},
        receivable=receivable,
    )
    today = ms_to_datetime(at_ms).date()
    if portfolio.day is None or today > portfolio.day:
        portfolio.day, portfolio.day_start_equity = today, state.equity
        portfolio.save(update_fields=["day", "day_start_equity", "updated_at"])
        state = replace(state, day_start_equity=state.equity)
    return state
