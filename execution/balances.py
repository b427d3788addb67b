"""Comparing the book with the exchange's balances (pure: the shell is ``risk.reconcile``).

The book holds the quote asset as its cash and the base asset of each symbol it traded as that position's
quantity; the exchange reports a total (free + locked) per asset. A difference larger than the asset's tolerance —
the market's minimum order quantity for a base asset, the smallest such minimum valued at its price for the quote
asset — is a difference the book does not explain: the exchange is the truth, the book is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import NamedTuple

ZERO = Decimal(0)


class BalanceDifference(NamedTuple):
    asset: str
    book: Decimal
    exchange: Decimal
    tolerance: Decimal

    @property
    def difference(self) -> Decimal:
        """What the exchange has more (+) or less (−) than the book."""
        return self.exchange - self.book

    def describe(self) -> str:
        return (
            f"{self.asset}: book {_n(self.book)}, exchange {_n(self.exchange)} "
            f"(difference {'+' if self.difference > 0 else ''}{_n(self.difference)}, tolerance {_n(self.tolerance)})"
        )

    def as_json(self) -> dict[str, str]:
        return {
            "asset": self.asset,
            "book": str(self.book),
            "exchange": str(self.exchange),
            "difference": str(self.difference),
            "tolerance": str(self.tolerance),
        }


def book_assets(cash: Decimal, quote: str, positions: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """The book by asset: the cash as the quote asset, each position (``BASE_QUOTE`` symbol) as its base asset."""
    held = {quote: cash}
    for symbol, quantity in positions.items():
        base = symbol.partition("_")[0]
        held[base] = held.get(base, ZERO) + quantity
    return held


def balance_differences(
    book: Mapping[str, Decimal], exchange: Mapping[str, Decimal], tolerances: Mapping[str, Decimal]
) -> list[BalanceDifference]:
    """The book's assets whose exchange total differs by more than their tolerance, by asset name. Assets the
    book never traded are not its business (another holding on the account) and are not compared."""
    differences = []
    for asset in sorted(book):
        held, there, tolerance = book[asset], exchange.get(asset, ZERO), tolerances.get(asset, ZERO)
        if abs(there - held) > tolerance:
            differences.append(BalanceDifference(asset, held, there, tolerance))
    return differences


def _n(value: Decimal) -> str:
    return format(value.normalize(), "f")
