"""Live execution: send a stored PENDING order to MEXC once, and book what the exchange executed.

The shell around ``execution.live`` (the exchange client) and ``execution.live_book`` (booking a fill):

* An order is checked (trading state, age) under the account lock, then sent outside any lock: it is marked sent
  (``sent_at``, committed) right before the request leaves; the fill is booked under the account lock. Nothing
  that fails before that mark (the exchange unreachable) makes the order sent: it stays PENDING, never sent.
* **An order marked sent is never sent again and never refused on the trading state or its age**: a redelivered
  task, the reconciliation or a restarted worker asks the exchange for it by its client order id — several times
  (``LiveExecutor.find``), on every reconciliation run — and books what the exchange executed, HALT or not. One the
  exchange still does not show ``UNSEEN_MAX_SEC`` after it was sent becomes UNKNOWN with a CRITICAL alert: a person
  checks the account (a status nothing retries). Never a second order for one signal.
* An entry is sent only while it is young: PENDING (never sent) for longer than ``LIVE_PENDING_MAX_AGE_SEC`` it
  becomes EXPIRED (with an alert); one sent late (a redelivery, a reconciliation, more than ``LATE_SEND_SEC`` after
  its decision) has the slippage check run again against the exchange's current price first.
* A SELL sends what is really there: the smallest of the order's quantity, the book's position and the free
  balance on the exchange (a balance read short of the book is confirmed by a second read), rounded down to the
  market's step. Refused for balance or minimum notional it is sized again on a fresh balance (room left for a
  commission charged in the base asset) and sent once more (CRITICAL alert). EXPIRED (dust, not retried) only when
  the book's own quantity is below the market's minimum quantity or notional; an exit the exchange's balance cannot
  cover is REJECTED with a CRITICAL alert, and the risk desk tries it again on the next candle.
* What the exchange executed is booked even when the book cannot take it (cash short, more sold than held): the
  differences are named in a CRITICAL alert; such a fill is never FAILED.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from execution.live import (
    RESIZABLE_CODES,
    LiveExecutionError,
    LiveExecutor,
    LiveFill,
    NotSent,
    OrderOutcomeUnknown,
    TradesUnavailable,
)
from execution.live_book import book_exchange_fill
from execution.models import Order, Position
from execution.paper import Fill
from ground import amounts
from ground.timeutil import ms_to_datetime

from .alerts import raise_alert
from .engine import stop_price
from .models import RiskParameters
from .order_service import (
    SETTLED_BY_FILL,
    _blocked_by_state,
    _close_trades,
    _finish,
    _locked_order,
    _record_trades,
    load_book,
    save_book,
)

logger = logging.getLogger("cdb.execution.live")

LATE_SEND_SEC = 2.0  # a fresh decision reaches the executor well within this; an entry older was held up
# MEXC shows an accepted order within seconds; one sent and still not shown after this long needs a person.
UNSEEN_MAX_SEC = 600.0
BALANCE_CONFIRM_WAIT_SEC = 1.0  # a balance read short of the book is read again after this (a lagging view)
NOT_SETTLED = {
    "REJECTED": Order.Status.REJECTED,
    "EXPIRED": Order.Status.EXPIRED,
    "UNKNOWN": Order.Status.UNKNOWN,
}  # anything else: FAILED
ZERO = Decimal(0)


class AlreadySent(Exception):
    """Another process marked the order sent first: it follows the order, this one leaves it alone."""


@lru_cache(maxsize=1)
def live_executor() -> LiveExecutor:
    """One exchange client per process (markets are loaded once)."""
    return LiveExecutor()


def execute_live(event: dict) -> Order | None:
    """Send the stored PENDING order named by the event, or find the one sent before (see the module docstring),
    and book its outcome."""
    with transaction.atomic():
        state, order = _locked_order(event)
        if order is None or order.status != Order.Status.PENDING:
            return order
        sent = order.sent_at is not None
        if not sent:
            blocked = _blocked_by_state(state, order)
            if blocked:
                order.status, order.reason = Order.Status.REJECTED, blocked
                _finish(order)
                return order
            expired = _too_old(order)
            if expired:  # never sent: nothing to ask the exchange
                return book_live_fill(order, LiveFill("EXPIRED", ZERO, None, ZERO, "", expired))
    try:
        fill = _outcome_of_sent(live_executor(), order) if sent else _send(live_executor(), order)
    except AlreadySent:
        return order
    except LiveExecutionError as error:  # NotSent, OrderOutcomeUnknown, ExchangeUnreachable, TradesUnavailable …
        if order.sent_at is None:  # failed before the mark: nothing left
            why = f"not sent ({error}); left PENDING, never sent, for the reconciliation"
            # Said on the order: one tried before is sent late, its price checked again (``_late_entry_refusal``).
            Order.objects.filter(pk=order.pk, status=Order.Status.PENDING, sent_at__isnull=True).update(
                reason=why[:2000]
            )
        else:
            why = f"outcome unknown ({error}); left PENDING for the reconciliation"
        _alert_unknown(order, why)
        return order
    with transaction.atomic():
        _, order = _locked_order(event)
        if order is None or order.status != Order.Status.PENDING:
            return order
        return book_live_fill(order, fill)


def _alert_unknown(order: Order, what: str) -> None:
    raise_alert(
        "WARNING",
        "ORDER_UNKNOWN",
        f"{order.symbol} {order.side} {_quantity(order, order.quantity)}: {what}",
        timestamp=order.event_time,
        symbol=order.symbol,
    )


def _outcome_of_sent(executor: LiveExecutor, order: Order) -> LiveFill:
    """The exchange's outcome of an order marked sent: looked up, followed while open, never sent again. Not shown
    (or its trades unreadable) ``UNSEEN_MAX_SEC`` after it was sent: UNKNOWN, for a person."""
    try:
        found = executor.find(order.client_order_id, order.symbol)
        if found is not None and found.status == "PENDING":  # still open: follow it, sending nothing
            found = executor.follow(order.client_order_id, order.symbol, found.order_id)
    except TradesUnavailable as error:
        return _unseen_or_wait(order, str(error))
    if found is None:
        return _unseen_or_wait(order, "the exchange does not show it")
    return found


def _unseen_or_wait(order: Order, why: str) -> LiveFill:
    since = (timezone.now() - order.sent_at).total_seconds()
    if since <= UNSEEN_MAX_SEC:
        raise OrderOutcomeUnknown(f"{why} {since:.0f}s after it was sent; asked again later, never sent twice")
    reason = (
        f"{why} {since:.0f}s after it was sent (more than {UNSEEN_MAX_SEC:g}s): outcome unknown, not sent again; "
        "a person must check the exchange's account"
    )
    return LiveFill("UNKNOWN", ZERO, None, ZERO, "", reason)


def _claim(order: Order) -> None:
    """Mark the order sent (committed) right before it leaves; only one process gets to. A resized exit's second
    send is the same order, already marked by this process."""
    if order.sent_at is not None:
        return
    now = timezone.now()
    with transaction.atomic():
        marked = Order.objects.filter(pk=order.pk, status=Order.Status.PENDING, sent_at__isnull=True).update(
            sent_at=now
        )
    if not marked:
        raise AlreadySent(order.client_order_id)
    order.sent_at = now


def _send(executor: LiveExecutor, order: Order) -> LiveFill:
    """Send an order never sent before (an entry rechecked if late), marking it sent right before it leaves."""
    if order.side == "BUY":
        refusal = _late_entry_refusal(executor, order)
        if refusal is not None:
            return refusal
        return executor.submit(
            order.client_order_id,
            order.symbol,
            "BUY",
            order.quantity,
            reference_price=order.requested_price,
            before_sending=lambda: _claim(order),
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


def _late_entry_refusal(executor: LiveExecutor, order: Order) -> LiveFill | None:
    """An entry sent late (tried before — its reason says why it was not sent — or older than LATE_SEND_SEC) at a
    price that moved beyond MAX_SLIPPAGE_PCT since its decision: REJECTED. None: send it."""
    age = (timezone.now() - order.created_at).total_seconds()
    if age <= LATE_SEND_SEC and not order.reason:
        return None
    price = executor.last_price(order.symbol)
    if price <= 0:
        raise NotSent(f"no current price to check {order.client_order_id} again before sending it late")
    limit = RiskParameters.load().max_slippage_pct
    slippage = abs(price - order.requested_price) / order.requested_price
    if slippage <= limit:
        return None
    reason = (
        f"sent late ({age:.1f}s after its decision): the price moved {slippage:.4%} from "
        f"{amounts.price(order.requested_price, amounts.quote_of(order.symbol))} to "
        f"{amounts.price(price, amounts.quote_of(order.symbol))}, beyond MAX_SLIPPAGE_PCT {limit:.2%}; not sent"
    )
    return LiveFill("REJECTED", ZERO, None, ZERO, "", reason)


def _sell(executor: LiveExecutor, order: Order) -> LiveFill:
    """A SELL of what is really there (module docstring); refused for balance or minimum notional, sized again on a
    fresh balance and sent once more."""
    market = executor.market_of(order.symbol)
    if market is None:
        return LiveFill("REJECTED", ZERO, None, ZERO, "", f"unknown symbol {order.symbol} on MEXC spot")
    booked = Position.objects.filter(symbol=order.symbol).values_list("quantity", flat=True).first() or ZERO
    wanted = min(order.quantity, booked)
    _, dust = executor.sellable(order.symbol, wanted, wanted)
    if dust:  # what the book holds cannot be sold, whatever the exchange shows: dust
        return _dust(order, booked, dust)
    free = _free(executor, market["baseId"], wanted)
    amount, problem = executor.sellable(order.symbol, wanted, free)
    if problem:
        return _short(order, booked, free, problem)
    if min(booked, free) < order.quantity:
        _alert_resized(order, amount, f"the book holds {booked}, the exchange has {free} free")
    claim = lambda: _claim(order)  # noqa: E731 - the same mark for both sends
    fill = executor.submit(
        order.client_order_id, order.symbol, "SELL", amount, order.requested_price, before_sending=claim
    )
    if fill.status != "REJECTED" or fill.code not in RESIZABLE_CODES:
        return fill
    time.sleep(BALANCE_CONFIRM_WAIT_SEC)
    free = _free(executor, market["baseId"], ZERO)
    # As much as is free; when that is all of it, room for a commission the exchange takes in the base asset.
    room = free if free < amount else free / (1 + Decimal(str(market.get("taker") or 0)))
    smaller, problem = executor.sellable(order.symbol, min(amount, room), free)
    if problem or smaller >= amount:
        return _short(order, booked, free, problem or f"the exchange refused {amount}: {fill.reason}")
    _alert_resized(order, smaller, f"the exchange refused {amount} ({fill.reason}); {free} free")
    return executor.submit(
        order.client_order_id, order.symbol, "SELL", smaller, order.requested_price, before_sending=claim
    )


def _free(executor: LiveExecutor, asset: str, wanted: Decimal) -> Decimal:
    """The free balance of ``asset``; one short of ``wanted`` is read again after a moment (a lagging view)."""
    free = executor.balances().get(asset, (ZERO, ZERO))[0]
    if free < wanted:
        time.sleep(BALANCE_CONFIRM_WAIT_SEC)
        free = executor.balances().get(asset, (ZERO, ZERO))[0]
    return free


def _dust(order: Order, booked: Decimal, problem: str) -> LiveFill:
    reason = f"what the book holds ({booked}) is below the market's minimum: {problem}; not sent"
    raise_alert("WARNING", "EXIT_DUST", f"SELL {order.symbol}: {reason}", symbol=order.symbol)
    return LiveFill("EXPIRED", ZERO, None, ZERO, "", reason)


def _short(order: Order, booked: Decimal, free: Decimal, problem: str) -> LiveFill:
    """The exchange's balance cannot cover the exit (read twice): REJECTED, the risk desk tries again next candle."""
    reason = f"the book holds {booked}, the exchange shows {free} free: {problem}; tried again on the next candle"
    raise_alert("CRITICAL", "EXIT_NOT_COVERED", f"SELL {order.symbol}: {reason}", symbol=order.symbol)
    return LiveFill("REJECTED", ZERO, None, ZERO, "", reason)


def _alert_resized(order: Order, amount: Decimal, why: str) -> None:
    message = (
        f"SELL {order.symbol} resized from {_quantity(order, order.quantity)} to {_quantity(order, amount)} "
        f"({_quantity(order, order.quantity - amount)} less): {why}"
    )
    raise_alert("CRITICAL", "EXIT_RESIZED", message, symbol=order.symbol)


def book_live_fill(order: Order, fill: LiveFill) -> Order:
    """Book the exchange's outcome of ``order`` (locked, PENDING) under the account lock, store the order, publish
    its order_result and record its trades. A fill is always booked (``execution.live_book``)."""
    order.order_id = fill.order_id
    if fill.status not in SETTLED_BY_FILL:
        order.status, order.reason = NOT_SETTLED.get(fill.status, Order.Status.FAILED), fill.reason
        _finish(order)
        if order.status == Order.Status.EXPIRED:
            message = f"{order.symbol} {order.side} {_quantity(order, order.quantity)} EXPIRED: {order.reason}"
            raise_alert("WARNING", "ORDER_EXPIRED", message, timestamp=order.event_time, symbol=order.symbol)
        elif order.status == Order.Status.UNKNOWN:
            message = (
                f"{order.symbol} {order.side} {_quantity(order, order.quantity)} ({order.client_order_id}): "
                f"{order.reason}"
            )
            raise_alert("CRITICAL", "ORDER_NEEDS_CHECK", message, timestamp=order.event_time, symbol=order.symbol)
        return order
    book, portfolio = load_book()
    booked = book_exchange_fill(
        book, order.symbol, order.side, fill.quantity, fill.price, fill.quote_fee, fill.base_fee, fill.cost
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


def _quantity(order: Order, value) -> str:
    """A quantity of the order's base asset, as an alert says it (``0.5 BTC``)."""
    return amounts.quantity(value, amounts.base_of(order.symbol))
