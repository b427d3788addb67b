"""Booking the exchange's fills (execution.live_book) and comparing balances (execution.balances): pure, by hand
and as a property over any sequence of fills."""

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from execution.accounting import Book, money
from execution.balances import balance_differences, book_assets
from execution.live_book import book_exchange_fill


def test_a_base_asset_fee_leaves_the_quantity_and_its_cost_as_a_fee():
    book = Book.new(D("10000"))
    booked = book_exchange_fill(book, "ETH_USDT", "BUY", D("0.4545"), D("2000"), base_fee=D("0.00022725"))
    held = book.holding("ETH_USDT")
    assert held.quantity == D("0.45427275") and booked.held_change == D("0.45427275")
    assert book.cash == D("9091") and held.cost == D("908.5455") and book.fees == D("0.4545")
    assert booked.fee_value == D("0.4545") and booked.problems == ()
    marks = {"ETH_USDT": D("2000")}
    assert book.equity(marks) == D("10000") + book.realized_pnl + book.unrealized_pnl(marks) - book.fees


def test_what_the_book_cannot_take_is_booked_and_named():
    book = Book.new(D("1000"))
    buy = book_exchange_fill(book, "ETH_USDT", "BUY", D("0.4545"), D("2299"), quote_fee=D("0.52"))
    assert book.cash == D("1000") - D("1044.8955") - D("0.52")
    assert buy.problems == (
        "BUY 0.4545 ETH_USDT at 2299 cost 1045.4155 with 1000 cash in the book: 45.4155 beyond the book's cash",
    )
    sell = book_exchange_fill(book, "ETH_USDT", "SELL", D("0.5"), D("2300"))
    assert book.holding("ETH_USDT").quantity == 0 and sell.held_change == D("-0.4545")
    assert "0.0455 more sold than the book held" in sell.problems[0]


def test_balances_differ_only_beyond_their_tolerance():
    book = book_assets(D("100"), "USDT", {"ETH_USDT": D("0.5"), "BTC_USDT": D("0")})
    assert book == {"USDT": D("100"), "ETH": D("0.5"), "BTC": D("0")}
    exchange = {"USDT": D("100.1"), "ETH": D("0.49995"), "BTC": D("0.01"), "MX": D("3")}
    tolerances = {"USDT": D("0.2"), "ETH": D("0.0001"), "BTC": D("0.000001")}
    [btc] = balance_differences(book, exchange, tolerances)
    assert (btc.asset, btc.difference) == ("BTC", D("0.01"))
    assert btc.describe() == "BTC: book 0, exchange 0.01 (difference +0.01, tolerance 0.000001)"


prices = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4)
quantities = st.decimals(min_value=D("0.0001"), max_value=D("100"), places=4)
fills = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        quantities,
        prices,
        st.decimals(min_value=D("0"), max_value=D("0.01"), places=4),
        st.sampled_from(["quote", "base"]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(initial=st.decimals(min_value=D("0"), max_value=D("100000"), places=2), fills=fills, mark=prices)
def test_the_equity_identity_holds_for_any_exchange_fills(initial, fills, mark):
    """Overdrawn cash, oversold positions, fees in either asset: booked, and the identity still exact."""
    book = Book.new(initial)
    for side, quantity, price, rate, fee_in in fills:
        fee = money(quantity * rate) if fee_in == "base" else money(quantity * price * rate)
        quote_fee, base_fee = (fee, D(0)) if fee_in == "quote" else (D(0), fee)
        book_exchange_fill(book, "ETH_USDT", side, quantity, price, quote_fee, base_fee)
        held = book.holding("ETH_USDT")
        assert held.quantity >= 0 and held.cost >= 0
    marks = {"ETH_USDT": mark}
    assert book.equity(marks) == initial + book.realized_pnl + book.unrealized_pnl(marks) - book.fees
