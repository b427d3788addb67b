"""The book's arithmetic: by hand, and a property test over any sequence of fills."""

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.accounting import AccountingError, Book, money

SYMBOLS = ("AAA_USDT", "BBB_USDT")


def test_buy_then_partial_sell_by_hand():
    book = Book.new(D("1000"))
    book.apply("AAA_USDT", "BUY", D("2"), D("100"), D("0.2"))  # cash 1000 − 200 − 0.2 = 799.8
    book.apply("AAA_USDT", "BUY", D("1"), D("130"), D("0.13"))  # cash 669.67; 3 held at cost 330 (avg 110)
    realized = book.apply("AAA_USDT", "SELL", D("1.5"), D("120"), D("0.18"))  # cost sold 165 → +15
    assert realized == D("15") and book.realized_pnl == D("15")
    assert book.cash == D("669.67") + D("180") - D("0.18")
    assert book.holding("AAA_USDT").quantity == D("1.5") and book.holding("AAA_USDT").cost == D("165")
    assert book.fees == D("0.51")
    marks = {"AAA_USDT": D("90")}
    assert book.unrealized_pnl(marks) == D("135") - D("165")
    assert book.equity(marks) == D("1000") + D("15") + D("-30") - D("0.51")


def test_no_cash_below_zero_and_no_shorting():
    book = Book.new(D("100"))
    with pytest.raises(AccountingError, match="insufficient cash"):
        book.apply("AAA_USDT", "BUY", D("1"), D("100"), D("0.1"))
    with pytest.raises(AccountingError, match="only 0 held"):
        book.apply("AAA_USDT", "SELL", D("1"), D("10"), D("0"))
    assert book.cash == D("100") and book.fees == 0


prices = st.decimals(min_value=D("0.00000001"), max_value=D("100000"), places=8)
quantities = st.decimals(min_value=D("0.00000001"), max_value=D("1000"), places=8)
fills = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.sampled_from(["BUY", "SELL"]),
        quantities,
        prices,
        st.decimals(min_value=D("0"), max_value=D("0.01"), places=4),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    initial=st.decimals(min_value=D("1"), max_value=D("1000000"), places=2),
    fills=fills,
    marks=st.tuples(prices, prices),
)
def test_equity_identity_holds_exactly_for_any_fills(initial, fills, marks):
    book = Book.new(initial)
    for symbol, side, quantity, price, fee_rate in fills:
        if side == "SELL":
            quantity = min(quantity, book.holding(symbol).quantity)
            if quantity <= 0:
                continue
        fee = money(quantity * price * fee_rate)
        try:
            book.apply(symbol, side, quantity, price, fee)
        except AccountingError:
            continue  # refused fills change nothing
        assert book.cash >= 0
        assert all(h.quantity >= 0 and h.cost >= 0 for h in book.holdings.values())
    mark = dict(zip(SYMBOLS, marks, strict=True))
    assert book.equity(mark) == initial + book.realized_pnl + book.unrealized_pnl(mark) - book.fees
