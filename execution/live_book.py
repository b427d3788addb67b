"""Booking what the exchange executed: the exchange's fills are the truth, whatever the book expected.

Pure (a ``Book`` in, what changed out), so the rules can be read and tested without an exchange:

* a fill is always booked — a BUY that costs more than the book's cash leaves the cash negative, a SELL of more
  than the book holds empties the holding — and what the book could not take is named, for a CRITICAL alert;
* a commission in the quote asset comes out of the cash; one in the base asset comes out of the quantity held
  (its value at the fill price is a fee, and the cost basis of those units leaves the holding, so
  ``equity = initial cash + realized + unrealized − fees`` still holds exactly); one in a third asset (MX) is
  not the book's money: the caller records it on the order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from .accounting import ZERO, Book, Holding, money


class BookedFill(NamedTuple):
    held_change: Decimal  # how the quantity held moved: + for a BUY (net of a base-asset fee), − for a SELL
    fee_value: Decimal  # the commission in quote money (quote part + base part at the fill price)
    problems: tuple[str, ...]  # what the book could not take (cash short, more sold than held): named differences


def book_exchange_fill(
    book: Book,
    symbol: str,
    side: str,
    quantity: Decimal,
    price: Decimal,
    quote_fee: Decimal = ZERO,
    base_fee: Decimal = ZERO,
) -> BookedFill:
    """Apply a fill the exchange executed to ``book``; never refuses it (see the module docstring)."""
    if side not in ("BUY", "SELL"):
        raise ValueError(f"unknown side {side!r}")
    problems: list[str] = []
    held = book.holding(symbol)
    before = held.quantity
    notional = money(quantity * price)
    if side == "BUY":
        spent = notional + quote_fee
        if spent > book.cash:
            problems.append(
                f"BUY {_n(quantity)} {symbol} at {_n(price)} cost {_n(spent)} with {_n(book.cash)} cash in the book: "
                f"{_n(spent - book.cash)} beyond the book's cash"
            )
        book.cash -= spent
        held = Holding(held.quantity + quantity, held.cost + notional)
    else:
        sold = quantity
        if quantity > held.quantity:
            problems.append(
                f"SELL {_n(quantity)} {symbol} with {_n(held.quantity)} in the book: "
                f"{_n(quantity - held.quantity)} more sold than the book held"
            )
            sold = held.quantity
        cost_sold = held.cost if sold == held.quantity else money(held.cost * sold / held.quantity)
        book.cash += notional - quote_fee
        book.realized_pnl += notional - cost_sold
        held = Holding(held.quantity - sold, held.cost - cost_sold)
    book.fees += quote_fee
    fee_value = quote_fee
    if base_fee > 0:
        held, value = _take_base_fee(book, symbol, held, base_fee, price, problems)
        fee_value += value
    book.holdings[symbol] = held
    return BookedFill(held.quantity - before, fee_value, tuple(problems))


def _take_base_fee(
    book: Book, symbol: str, held: Holding, fee: Decimal, price: Decimal, problems: list[str]
) -> tuple[Holding, Decimal]:
    """A commission of ``fee`` units of the base asset: as if those units were sold at ``price`` and the proceeds
    paid as the fee — the quantity and its cost basis leave the holding, their value is a fee."""
    taken = fee
    if fee > held.quantity:
        problems.append(f"a fee of {_n(fee)} of {symbol}'s base asset with {_n(held.quantity)} in the book")
        taken = held.quantity
    value = money(taken * price)
    cost_share = held.cost if taken == held.quantity else money(held.cost * taken / held.quantity)
    book.realized_pnl += value - cost_share
    book.fees += value
    return Holding(held.quantity - taken, held.cost - cost_share), value


def _n(value: Decimal) -> str:
    """A Decimal as plain digits, without trailing zeros: 45.417947750000 -> 45.41794775."""
    return format(value.normalize(), "f")
