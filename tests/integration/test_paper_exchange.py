"""The paper fill model by hand, its seeded failure rate, and partial fills on thin volume."""

from decimal import Decimal as D

from execution.paper import PaperExchange

EXCHANGE = PaperExchange(slippage_pct=D("0.0005"), fee_rate=D("0.001"), failure_rate=D("0"), seed=42)


def test_buy_fill_by_hand():
    # 2 × 100 with 0.05 % slippage against us: price 100.05; fee 0.1 % of 200.10 = 0.2001.
    fill = EXCHANGE.fill("cdb-a", "BUY", D("2"), D("100"))
    assert (fill.status, fill.quantity, fill.price, fill.fee) == ("FILLED", D("2"), D("100.05"), D("0.2001"))
    assert fill.order_id.startswith("PAPER_")


def test_sell_fill_by_hand():
    # 3 × 0.05251: price 0.05251 × 0.9995 = 0.052483745; fee 0.001 × 3 × 0.052483745 = 0.000157451235.
    fill = EXCHANGE.fill("cdb-b", "SELL", D("3"), D("0.05251"))
    assert (fill.price, fill.fee) == (D("0.052483745"), D("0.000157451235"))


def test_failure_rate_is_reproducible_by_seed():
    exchange = PaperExchange(failure_rate=D("0.05"), seed=42)
    outcomes = [exchange.fill(f"cdb{i}", "BUY", D("1"), D("10")).status for i in range(10_000)]
    failed = outcomes.count("FAILED")
    assert failed == 494  # the seed fixes the count: about 5 % (4.94 %)
    again = [exchange.fill(f"cdb{i}", "BUY", D("1"), D("10")).status for i in range(10_000)]
    assert again == outcomes  # same seed, same client ids → same outcome, also on redelivery
    other = PaperExchange(failure_rate=D("0.05"), seed=7)
    assert [other.fill(f"cdb{i}", "BUY", D("1"), D("10")).status for i in range(10_000)] != outcomes


def test_failed_fill_carries_a_reason_and_nothing_filled():
    exchange = PaperExchange(failure_rate=D("1"))
    fill = exchange.fill("cdb-x", "BUY", D("1"), D("10"))
    assert (fill.status, fill.quantity, fill.price, fill.fee) == ("FAILED", D("0"), None, D("0"))
    assert "simulated failure" in fill.reason


def test_thin_volume_fills_part_of_the_order():
    exchange = PaperExchange(failure_rate=D("0"), max_volume_share=D("0.25"))
    # The candle traded 20: at most 0.25 × 20 = 5 of the 8 asked.
    part = exchange.fill("cdb-p", "BUY", D("8"), D("10"), volume=D("20"))
    assert (part.status, part.quantity) == ("PARTIALLY_FILLED", D("5")) and "thin volume" in part.reason
    assert part.fee == D("0.050025")  # 5 × 10.005 × 0.001
    whole = exchange.fill("cdb-w", "BUY", D("5"), D("10"), volume=D("20"))
    assert (whole.status, whole.quantity) == ("FILLED", D("5"))  # exactly the share: not partial
    assert exchange.fill("cdb-z", "BUY", D("1"), D("10"), volume=D("0")).status == "FAILED"
