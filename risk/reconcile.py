"""Reconciliation: settling orders left PENDING by a crash or a lost task (run at worker start-up, every minute and
on demand), and comparing the book with the exchange's balances (live trading: every minute and on demand)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from execution.balances import BalanceDifference, balance_differences, book_assets
from execution.live import LiveExecutionError, LiveExecutor, live_trading_enabled
from execution.models import BalanceCheck, Order, Portfolio, Position
from ground.amounts import counted

from .alerts import raise_alert
from .live_order_service import live_executor
from .models import TradingState
from .order_executor import execute_order
from .state import halt

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
CONFIRM_WAIT_SEC = 2.0  # a difference is read again after this before it counts (the account view may lag a fill)
DEFAULT_QUOTE_TOLERANCE = Decimal(1)  # in the quote asset, when no market the book traded names a minimum notional


@dataclass(frozen=True)
class BalanceReport:
    checked: bool  # False: skipped (paper trading, orders in flight, the book moved, the exchange unreachable)
    detail: str
    differences: tuple[BalanceDifference, ...] = ()
    halted: bool = False
    live: bool = True  # False: paper trading, there is nothing to compare

    @property
    def ok(self) -> bool:
        return not self.differences


def reconcile_balances(executor: LiveExecutor | None = None) -> BalanceReport:
    """Compare the book's cash and positions with ``fetch_balance()`` (live trading only). A difference above the
    asset's tolerance (``execution.balances``), seen again on a second read ``CONFIRM_WAIT_SEC`` later, raises a
    CRITICAL alert — once for the same differences — and, with LIVE_RECONCILE_ACTION=halt, halts trading. The result,
    or why the check was skipped, is kept for the health card and /api/status/.

    No lock is held while the exchange is asked: the book is read before and after, and a check during which an
    order was in flight (sent, not booked) or the book moved is skipped; the next one compares again."""
    if not live_trading_enabled():
        if getattr(settings, "LIVE_TRADING", False):
            return _skipped("LIVE_TRADING=true but MEXC_API_KEY or MEXC_API_SECRET is not set: nothing compared", True)
        return BalanceReport(False, "paper trading: no exchange balances to compare", live=False)
    try:
        executor = executor or live_executor()
    except LiveExecutionError as error:
        return _skipped(f"skipped: no exchange client ({error})", True)
    portfolio = Portfolio.load()  # created on the first check: before the book's version is read
    before = _book_version()
    if before[1]:
        return _skipped(f"skipped: {counted(before[1], 'order')} sent and not booked yet")
    positions = dict(Position.objects.values_list("symbol", "quantity"))
    quote = _quote(positions)
    book = book_assets(portfolio.cash, quote, positions)
    try:
        tolerances = _tolerances(executor, positions)
        differences = tuple(balance_differences(book, _totals(executor), tolerances))
        if differences:  # one read may lag the matching engine: a difference counts when a second read shows it
            time.sleep(CONFIRM_WAIT_SEC)
            differences = tuple(balance_differences(book, _totals(executor), tolerances))
    except LiveExecutionError as error:  # ExchangeUnreachable included
        return _skipped(f"skipped: exchange balances unavailable ({error})", True)
    if _book_version() != before:
        return _skipped("skipped: the book moved during the check")
    compared = ", ".join(f"{asset} {amount}" for asset, amount in sorted(book.items()))
    detail = f"book and exchange agree ({compared})"
    if differences:
        detail = "book and exchange differ: " + "; ".join(d.describe() for d in differences)
    halted = _record_check(differences, detail)
    if differences:
        logger.error("%s", detail)
    return BalanceReport(True, detail, differences, halted)


def _totals(executor: LiveExecutor) -> dict[str, Decimal]:
    return {asset: free + locked for asset, (free, locked) in executor.balances().items()}


def _skipped(detail: str, unavailable: bool = False) -> BalanceReport:
    """Store a check that did not compare, so the health card says so: one that could not run (no keys, the exchange
    unreachable or refusing the key) is not ok; one skipped for an order in flight keeps the last result's flag."""
    with transaction.atomic():
        last = BalanceCheck.objects.select_for_update().filter(pk=1).first()
        ok = False if unavailable else (last.ok if last is not None else True)
        differences = last.differences if last is not None else []
        BalanceCheck.objects.update_or_create(
            pk=1, defaults={"checked_at": timezone.now(), "ok": ok, "detail": detail[:2000], "differences": differences}
        )
    return BalanceReport(False, detail)


def _book_version() -> tuple:
    """What changes whenever the book does, and how many orders are in flight (sent, not settled)."""
    in_flight = Order.objects.filter(status=Order.Status.PENDING, sent_at__isnull=False).count()
    return Portfolio.objects.filter(pk=1).values_list("updated_at", flat=True).first(), in_flight


def _quote(positions: dict[str, Decimal]) -> str:
    quotes = {symbol.partition("_")[2] for symbol in positions}
    return quotes.pop() if len(quotes) == 1 else DEFAULT_QUOTE


def _tolerances(executor: LiveExecutor, positions: dict[str, Decimal]) -> dict[str, Decimal]:
    """The market's minimum quantity per base asset; for the quote, the smallest minimum notional of the markets the
    book traded (what it could not have traded anyway; ``DEFAULT_QUOTE_TOLERANCE`` when none names one)."""
    tolerances: dict[str, Decimal] = {}
    notionals = []
    traded = set(positions) | set(
        Order.objects.filter(status__in=[Order.Status.FILLED, Order.Status.PARTIALLY_FILLED])
        .values_list("symbol", flat=True)
        .distinct()
    )
    for symbol in sorted(traded):
        market = executor.market_of(symbol)
        if market is None:
            continue
        if symbol in positions:
            tolerances[symbol.partition("_")[0]] = _limit(market, "amount")
        if _limit(market, "cost") > 0:
            notionals.append(_limit(market, "cost"))
    tolerances[_quote(positions)] = min(notionals, default=DEFAULT_QUOTE_TOLERANCE)
    return tolerances


def _limit(market: dict, kind: str) -> Decimal:
    return Decimal(str((market["limits"].get(kind) or {}).get("min") or 0))


def _record_check(differences: tuple[BalanceDifference, ...], detail: str) -> bool:
    """Store the check; on new differences raise the CRITICAL alert and, if so configured, halt. True: halted."""
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
