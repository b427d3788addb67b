"""Reconciliation: settling orders left PENDING by a crash or a lost task (run at worker start-up, every minute and
on demand), and comparing the book with the exchange's balances (live trading: every minute and on demand)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketdata.ingest import latest_price

from .balances import BalanceDifference, balance_differences, book_assets
from .live import LiveExecutionError, LiveExecutor, live_trading_enabled
from .models import BalanceCheck, Order, Portfolio, Position
from .service import execute_order

logger = logging.getLogger("cdb.execution.reconcile")


def reconcile_pending(older_than_seconds: int | None = None) -> list[Order]:
    """Execute (exactly once, under the usual locks) every PENDING live order older than the timeout. Paper
    orders are not reconciled: each waits for its symbol's next candle, whose price it fills at."""
    if not live_trading_enabled():
        return []
    timeout = settings.PENDING_ORDER_TIMEOUT_SEC if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=timeout)
    settled = []
    for client_order_id in Order.objects.filter(status=Order.Status.PENDING, created_at__lte=cutoff).values_list(
        "client_order_id", flat=True
    ):
        order = execute_order({"client_order_id": client_order_id})
        if order is not None:
            logger.warning("reconciled PENDING order %s → %s", client_order_id, order.status)
            settled.append(order)
    return settled


# --- balances ---------------------------------------------------------------------------------------------------
DEFAULT_QUOTE = "USDT"  # the quote of every MEXC spot market the system trades, when the book names none yet
BALANCE_ACTOR = "balance reconciliation"


@dataclass(frozen=True)
class BalanceReport:
    checked: bool  # False: skipped (paper trading, orders in flight, the book moved, the exchange unreachable)
    detail: str
    differences: tuple[BalanceDifference, ...] = ()
    halted: bool = False

    @property
    def ok(self) -> bool:
        return not self.differences


def reconcile_balances(executor: LiveExecutor | None = None) -> BalanceReport:
    """Compare the book's cash and positions with ``fetch_balance()`` (live trading only). A difference above the
    asset's tolerance (``execution.balances``) raises a CRITICAL alert — once for the same differences — and, with
    LIVE_RECONCILE_ACTION=halt, halts trading. The result is kept for the health card and /api/status/.

    No lock is held while the exchange is asked: the book is read before and after, and a check during which an
    order was in flight (sent, not booked) or the book moved is skipped; the next one compares again."""
    if not live_trading_enabled():
        return BalanceReport(False, "paper trading: no exchange balances to compare")
    from .live_service import live_executor

    executor = executor or live_executor()
    before = _book_version()
    if before[1]:
        return BalanceReport(False, f"skipped: {before[1]} order(s) sent and not booked yet")
    portfolio = Portfolio.load()
    positions = dict(Position.objects.values_list("symbol", "quantity"))
    try:
        totals = {asset: free + locked for asset, (free, locked) in executor.balances().items()}
        tolerances = _tolerances(executor, positions)
    except LiveExecutionError as error:  # ExchangeUnreachable included
        return BalanceReport(False, f"skipped: exchange balances unavailable ({error})")
    if _book_version() != before:
        return BalanceReport(False, "skipped: the book moved during the check")
    quote = _quote(positions)
    book = book_assets(portfolio.cash, quote, positions)
    differences = tuple(balance_differences(book, totals, tolerances))
    compared = ", ".join(f"{asset} {amount}" for asset, amount in sorted(book.items()))
    detail = f"book and exchange agree ({compared})"
    if differences:
        detail = "book and exchange differ: " + "; ".join(d.describe() for d in differences)
    halted = _record_check(differences, detail)
    if differences:
        logger.error("%s", detail)
    return BalanceReport(True, detail, differences, halted)


def _book_version() -> tuple:
    """What changes whenever the book does, and how many orders are in flight (sent, not settled)."""
    in_flight = Order.objects.filter(status=Order.Status.PENDING, sent_at__isnull=False).count()
    return Portfolio.objects.filter(pk=1).values_list("updated_at", flat=True).first(), in_flight


def _quote(positions: dict[str, Decimal]) -> str:
    quotes = {symbol.partition("_")[2] for symbol in positions}
    return quotes.pop() if len(quotes) == 1 else DEFAULT_QUOTE


def _tolerances(executor: LiveExecutor, positions: dict[str, Decimal]) -> dict[str, Decimal]:
    """The market's minimum quantity per base asset; for the quote, the smallest of those minimums valued at the
    symbol's last price (what the book could not have traded anyway)."""
    tolerances: dict[str, Decimal] = {}
    quote_tolerances = []
    for symbol in positions:
        market = executor.market_of(symbol)
        if market is None:
            continue
        minimum = Decimal(str((market["limits"].get("amount") or {}).get("min") or 0))
        base = symbol.partition("_")[0]
        tolerances[base] = minimum
        price = latest_price(symbol)
        if price:
            quote_tolerances.append(minimum * price)
    tolerances[_quote(positions)] = min(quote_tolerances, default=Decimal(0))
    return tolerances


def _record_check(differences: tuple[BalanceDifference, ...], detail: str) -> bool:
    """Store the check; on new differences raise the CRITICAL alert and, if so configured, halt. True: halted."""
    from risk.alerts import raise_alert
    from risk.models import TradingState
    from risk.state import halt

    found = [d.as_json() for d in differences]
    with transaction.atomic():
        last = BalanceCheck.objects.select_for_update().filter(pk=1).first()
        repeated = last is not None and not last.ok and last.differences == found
        BalanceCheck.objects.update_or_create(
            pk=1, defaults={"checked_at": timezone.now(), "ok": not differences, "detail": detail, "differences": found}
        )
        if not differences or repeated:
            return False
        halting = settings.LIVE_RECONCILE_ACTION == "halt"
        action = "trading halted" if halting else "LIVE_RECONCILE_ACTION=alert: trading goes on"
        raise_alert("CRITICAL", "BALANCE_MISMATCH", f"{detail}; {action}")
        if not halting or TradingState.load().state == TradingState.State.HALTED:
            return False
        halt(f"balances differ from the exchange: {'; '.join(d.describe() for d in differences)}"[:500], BALANCE_ACTOR)
        return True


def balance_health() -> dict | None:
    """The health card's line for the book against the exchange (None in paper trading with no check stored)."""
    check = BalanceCheck.objects.filter(pk=1).first()
    if check is None:
        return {"ok": True, "detail": "not checked yet"} if live_trading_enabled() else None
    age = (timezone.now() - check.checked_at).total_seconds()
    return {"ok": check.ok, "detail": f"{check.detail} ({age:.0f}s ago)"[:500]}
