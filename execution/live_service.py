"""Live execution: send a stored PENDING order to MEXC once, and book what the exchange executed.

The shell around ``execution.live`` (the exchange client) and ``execution.live_book`` (booking a fill):

* The order is marked sent (``sent_at``) and committed before anything leaves; the exchange is called outside any
  lock; the fill is booked under the account lock. A redelivered task, the reconciliation or a restarted worker
  finds an order marked sent and first asks the exchange for it by its client order id — several times
  (``LiveExecutor.find``): an accepted order can take a moment to show — and books what it finds. Only when the
  exchange does not know it is it sent, under the same client order id: never a second order for one signal.
* An entry is sent only while it is young: PENDING for longer than ``LIVE_PENDING_MAX_AGE_SEC`` it becomes
  EXPIRED (with an alert) and is never sent; one sent late (a redelivery, a reconciliation, more than
  ``LATE_SEND_SEC`` after its decision) has the slippage check run again against the exchange's current price.
* A SELL sends what is really there: the smallest of the order's quantity, the book's position and the free
  balance on the exchange, rounded down to the market's step. Refused for balance or minimum notional it is sized
  again and sent once more (CRITICAL alert); what is below the market's minimum (dust) is reported and the order
  EXPIRED — a status the risk desk does not retry.
* What the exchange executed is booked even when the book cannot take it (cash short, more sold than held): the
  differences are named in a CRITICAL alert; such a fill is never FAILED.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cdb_project.timeutil import ms_to_datetime
from risk.alerts import raise_alert
from risk.engine import stop_price
from risk.models import RiskParameters

from .live import RESIZABLE_CODES, ExchangeUnreachable, LiveExecutor, LiveFill, OrderOutcomeUnknown
from .live_book import book_exchange_fill
from .models import Order, Position
from .paper import Fill
from .service import (
    SETTLED_BY_FILL,
    _blocked_by_state,
    _close_trades,
    _finish,
    _locked_order,
    _record_trades,
    _test_pause_hook,
    load_book,
    save_book,
)

logger = logging.getLogger("cdb.execution.live")

LATE_SEND_SEC = 2.0  # a fresh decision reaches the executor well within this; an entry older was held up
NOT_SETTLED = {"REJECTED": Order.Status.REJECTED, "EXPIRED": Order.Status.EXPIRED}  # anything else: FAILED
ZERO = Decimal(0)


@lru_cache(maxsize=1)
def live_executor() -> LiveExecutor:
    """One exchange client per process (markets are loaded once)."""
    return LiveExecutor()


def execute_live(event: dict) -> Order | None:
    """Send the stored PENDING order named by the event (see the module docstring) and book its outcome."""
    with transaction.atomic():
        state, order = _locked_order(event)
        if order is None or order.status != Order.Status.PENDING:
            return order
        blocked = _blocked_by_state(state, order)
        if blocked:
            order.status, order.reason = Order.Status.REJECTED, blocked
            _finish(order)
            return order
        sent_before = order.sent_at is not None
        if not sent_before:
            expired = _too_old(order)
            if expired:  # never sent: nothing to ask the exchange
                return book_live_fill(order, LiveFill("EXPIRED", ZERO, None, ZERO, "", expired))
            order.sent_at = timezone.now()
            order.save(update_fields=["sent_at"])
    _test_pause_hook()
    try:
        fill = _send(live_executor(), order, sent_before)
    except (OrderOutcomeUnknown, ExchangeUnreachable) as error:
        raise_alert(
            "WARNING",
            "ORDER_UNKNOWN",
            f"{order.side} {order.quantity} {order.symbol}: outcome unknown ({error}); left PENDING for reconcile",
            timestamp=order.event_time,
            symbol=order.symbol,
        )
        return order
    _test_pause_hook("CDB_TEST_PAUSE_BEFORE_BOOKING")
    with transaction.atomic():
        _, order = _locked_order(event)
        if order is None or order.status != Order.Status.PENDING:
            return order
        return book_live_fill(order, fill)


def _send(executor: LiveExecutor, order: Order, sent_before: bool) -> LiveFill:
    """The order's outcome on the exchange: found there (it was sent before), or sent now if it may still be."""
    if sent_before:
        found = executor.find(order.client_order_id, order.symbol)
        if found is not None:
            if found.status == "PENDING":  # still open: ``submit`` follows it without sending anything
                return executor.submit(order.client_order_id, order.symbol, order.side, order.quantity)
            return found
    if order.side == "BUY":
        refusal = _entry_refusal(executor, order, sent_before)
        if refusal is not None:
            return refusal
        return executor.submit(
            order.client_order_id, order.symbol, "BUY", order.quantity, reference_price=order.requested_price
        )
    return _sell(executor, order)


def _too_old(order: Order) -> str:
    """Why an entry may no longer be sent (empty: it may): PENDING for longer than LIVE_PENDING_MAX_AGE_SEC."""
    if order.side != "BUY":
        return ""
    age = (timezone.now() - order.created_at).total_seconds()
    limit = float(settings.LIVE_PENDING_MAX_AGE_SEC)
    if age <= limit:
        return ""
    return f"PENDING for {age:.1f}s, longer than LIVE_PENDING_MAX_AGE_SEC {limit:g}s: never sent"


def _entry_refusal(executor: LiveExecutor, order: Order, sent_before: bool) -> LiveFill | None:
    """An entry that must not be sent now: too old (EXPIRED), or sent late at a price that moved beyond
    MAX_SLIPPAGE_PCT since its decision (REJECTED). None: send it."""
    expired = _too_old(order)
    if expired:
        return LiveFill("EXPIRED", ZERO, None, ZERO, "", expired)
    age = (timezone.now() - order.created_at).total_seconds()
    if not sent_before and age <= LATE_SEND_SEC:
        return None
    price = executor.last_price(order.symbol)
    if price <= 0:
        raise OrderOutcomeUnknown(f"no current price to check {order.client_order_id} again before sending it late")
    limit = RiskParameters.load().max_slippage_pct
    slippage = abs(price - order.requested_price) / order.requested_price
    if slippage <= limit:
        return None
    reason = (
        f"sent late ({age:.1f}s after its decision): the price moved {slippage:.4%} from {order.requested_price} "
        f"to {price}, beyond MAX_SLIPPAGE_PCT {limit:.2%}; not sent"
    )
    return LiveFill("REJECTED", ZERO, None, ZERO, "", reason)


def _sell(executor: LiveExecutor, order: Order) -> LiveFill:
    """A SELL of what is really there (module docstring); refused for balance or minimum notional, sized again
    and sent once more."""
    market = executor.market_of(order.symbol)
    if market is None:
        return LiveFill("REJECTED", ZERO, None, ZERO, "", f"unknown symbol {order.symbol} on MEXC spot")
    booked = Position.objects.filter(symbol=order.symbol).values_list("quantity", flat=True).first() or ZERO
    free = _free(executor, market["baseId"])
    amount, problem = executor.sellable(order.symbol, min(order.quantity, booked), free)
    if problem:
        return _dust(order, booked, free, problem)
    if min(booked, free) < order.quantity:
        _alert_resized(order, amount, f"the book holds {booked}, the exchange has {free} free")
    fill = executor.submit(order.client_order_id, order.symbol, "SELL", amount, reference_price=order.requested_price)
    if fill.status != "REJECTED" or fill.code not in RESIZABLE_CODES:
        return fill
    free = _free(executor, market["baseId"])
    smaller, problem = executor.sellable(order.symbol, min(amount, free), free)
    if problem or smaller >= amount:
        return _dust(order, booked, free, problem or f"the exchange refused {amount}: {fill.reason}")
    _alert_resized(order, smaller, f"the exchange refused {amount} ({fill.reason}); {free} free")
    return executor.submit(order.client_order_id, order.symbol, "SELL", smaller, reference_price=order.requested_price)


def _free(executor: LiveExecutor, asset: str) -> Decimal:
    return executor.balances().get(asset, (ZERO, ZERO))[0]


def _dust(order: Order, booked: Decimal, free: Decimal, problem: str) -> LiveFill:
    reason = f"nothing sellable above the market's minimum (booked {booked}, free {free}): {problem}; not sent"
    raise_alert("WARNING", "EXIT_DUST", f"SELL {order.symbol}: {reason}", symbol=order.symbol)
    return LiveFill("EXPIRED", ZERO, None, ZERO, "", reason)


def _alert_resized(order: Order, amount: Decimal, why: str) -> None:
    message = f"SELL {order.symbol} resized from {order.quantity} to {amount} ({order.quantity - amount} less): {why}"
    raise_alert("CRITICAL", "EXIT_RESIZED", message, symbol=order.symbol)


def book_live_fill(order: Order, fill: LiveFill) -> Order:
    """Book the exchange's outcome of ``order`` (locked, PENDING) under the account lock, store the order, publish
    its order_result and record its trades. A fill is always booked (``execution.live_book``)."""
    order.order_id = fill.order_id
    if fill.status not in SETTLED_BY_FILL:
        order.status, order.reason = NOT_SETTLED.get(fill.status, Order.Status.FAILED), fill.reason
        _finish(order)
        if order.status == Order.Status.EXPIRED:
            message = f"{order.side} {order.quantity} {order.symbol} EXPIRED: {order.reason}"
            raise_alert("WARNING", "ORDER_EXPIRED", message, timestamp=order.event_time, symbol=order.symbol)
        return order
    book, portfolio = load_book()
    booked = book_exchange_fill(
        book, order.symbol, order.side, fill.quantity, fill.price, fill.quote_fee, fill.base_fee
    )
    save_book(book, portfolio, order.symbol)
    order.status, order.reason = SETTLED_BY_FILL[fill.status], fill.reason
    order.filled_quantity, order.price, order.fees = fill.quantity, fill.price, booked.fee_value
    order.fees_by_asset = _fees_by_asset(order.symbol, fill)
    order.filled_at = ms_to_datetime(order.event_time)
    if order.side == "BUY":
        order.entry_price = fill.price
        order.stop_loss = stop_price(fill.price, RiskParameters.load().stop_loss_pct)
    _finish(order)
    # The trades move by what the holding moved: a base-asset fee is not held (BUY) or left with the sale (SELL).
    moved = Fill(fill.status, abs(booked.held_change), fill.price, booked.fee_value, fill.order_id)
    if moved.quantity > 0 and order.side == "BUY":
        _record_trades(order, moved)
    elif moved.quantity > 0:
        _close_trades(order, moved)
    if booked.problems:
        message = f"{order.side} {order.symbol} executed on the exchange and booked anyway: " + "; ".join(
            booked.problems
        )
        raise_alert("CRITICAL", "FILL_BEYOND_BOOK", message, timestamp=order.event_time, symbol=order.symbol)
    return order


def _fees_by_asset(symbol: str, fill: LiveFill) -> dict[str, str]:
    base, _, quote = symbol.partition("_")
    paid = {quote: fill.quote_fee, base: fill.base_fee, **dict(fill.other_fees)}
    return {asset: str(amount) for asset, amount in paid.items() if amount}
