"""Portfolio accounting on Decimals: a pure book the executor and the backtest share.

Positions carry their cost basis (not just an average price) and every amount is
rounded to the storage precision when it is created, so the identity

    equity = initial cash + realized P&L + unrealized P&L − fees

holds exactly, not approximately, after any sequence of fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import NamedTuple

MONEY_STEP = Decimal("0.000000000001")  # 12 places, as stored
ZERO = Decimal(0)


def money(value: Decimal) -> Decimal:
    return value.quantize(MONEY_STEP, ROUND_HALF_EVEN)


class AccountingError(ValueError):
    """A fill the book cannot take: spending cash it does not have or selling what it does not hold."""


class Holding(NamedTuple):  # immutable; a tuple: one per fill, ~4× cheaper to build than a frozen dataclass
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # cost basis of the quantity held

    @property
    def avg_entry_price(self) -> Decimal:
        return money(self.cost / self.quantity) if self.quantity else ZERO


NO_HOLDING = Holding()  # what a symbol never traded holds (immutable: one instance serves every lookup)


@dataclass
class Book:
    initial_cash: Decimal
    cash: Decimal
    holdings: dict[str, Holding] = field(default_factory=dict)
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO

    @classmethod
    def new(cls, initial_cash: Decimal) -> Book:
        return cls(initial_cash, initial_cash)

    def holding(self, symbol: str) -> Holding:
        return self.holdings.get(symbol, NO_HOLDING)

    def apply(self, symbol: str, side: str, quantity: Decimal, price: Decimal, fee: Decimal) -> Decimal:
        """Take one fill; returns the realized P&L of a sale (price difference against cost, before fees)."""
        if quantity <= 0 or price <= 0 or fee < 0:
            raise AccountingError(f"invalid fill: quantity {quantity}, price {price}, fee {fee}")
        notional = money(quantity * price)
        held = self.holding(symbol)
        if side == "BUY":
            if notional + fee > self.cash:
                raise AccountingError(f"insufficient cash: {notional + fee} needed, {self.cash} available")
            self.cash -= notional + fee
            self.holdings[symbol] = Holding(held.quantity + quantity, held.cost + notional)
            realized = ZERO
        elif side == "SELL":
            if quantity > held.quantity:
                raise AccountingError(f"cannot sell {quantity} {symbol}: only {held.quantity} held (spot, no shorting)")
            cost_sold = held.cost if quantity == held.quantity else money(held.cost * quantity / held.quantity)
            realized = notional - cost_sold
            self.cash += notional - fee
            self.realized_pnl += realized
            self.holdings[symbol] = Holding(held.quantity - quantity, held.cost - cost_sold)
        else:
            raise AccountingError(f"unknown side {side!r}")
        self.fees += fee
        return realized

    def market_value(self, marks: Mapping[str, Decimal]) -> Decimal:
        total = ZERO  # summed in the holdings' order, like sum(..., ZERO): the backtest values the book per candle
        for symbol, held in self.holdings.items():
            if held.quantity:
                total += (held.quantity * marks[symbol]).quantize(MONEY_STEP, ROUND_HALF_EVEN)
        return total

    def unrealized_pnl(self, marks: Mapping[str, Decimal]) -> Decimal:
        return self.market_value(marks) - sum((h.cost for h in self.holdings.values() if h.quantity), ZERO)

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        return self.cash + self.market_value(marks)
