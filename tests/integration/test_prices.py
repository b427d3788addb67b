"""Last prices at a market time (of the candles known, closed, by then): the one-query ``latest_prices`` agrees
with ``latest_price`` symbol by symbol."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketdata.ingest import latest_price, latest_prices
from marketdata.models import Candle

pytestmark = pytest.mark.django_db


def _candle(symbol: str, interval: str, ts: int, close: str) -> None:
    price = Decimal(close)
    Candle.objects.create(
        symbol=symbol, interval=interval, timestamp=ts, open=price, high=price, low=price, close=price, volume=1
    )


def test_latest_prices_reads_the_last_close_known_at_the_time_across_intervals():
    # A candle is known at its close, open time + interval.
    _candle("AAA_USDT", "1m", 0, "10.123456789012")  # known at 60,000
    _candle("AAA_USDT", "1m", 60_000, "11")  # known at 120,000
    _candle("AAA_USDT", "5m", 0, "12.5")  # known at 300,000: another interval counts once it has closed
    _candle("AAA_USDT", "1m", 300_000, "13")  # known at 360,000: after the time asked for
    _candle("BBB_USDT", "1m", 0, "0.000000012345")
    _candle("CCC_USDT", "1m", 300_000, "99")  # nothing by then

    symbols = ["AAA_USDT", "BBB_USDT", "CCC_USDT", "ZZZ_USDT"]
    prices = latest_prices(symbols, 300_000)

    assert prices == {"AAA_USDT": Decimal("12.5"), "BBB_USDT": Decimal("0.000000012345")}
    assert all(isinstance(value, Decimal) for value in prices.values())
    assert prices == {s: latest_price(s, 300_000) for s in symbols if latest_price(s, 300_000) is not None}
    assert latest_prices(symbols, 59_999) == {}
    assert latest_prices([], 300_000) == {}
    assert latest_prices(["AAA_USDT", "AAA_USDT"], 120_000) == {"AAA_USDT": Decimal("11")}
    # At 180,000 the 5m candle opened at 0 has not closed: its close is not seen yet.
    assert (
        latest_prices(["AAA_USDT"], 180_000)
        == {"AAA_USDT": Decimal("11")}
        == {"AAA_USDT": latest_price("AAA_USDT", 180_000)}
    )


def test_at_an_equal_close_the_shorter_intervals_candle_gives_the_price():
    # Both known at 900,000: the 15m candle opened at 0 and the 1m candle opened at 840,000 (the latest open). The
    # interval's length decides, not its name ("15m" sorts before "1m").
    _candle("AAA_USDT", "15m", 0, "90")
    _candle("AAA_USDT", "1m", 840_000, "100")
    _candle("AAA_USDT", "5m", 600_000, "95")
    assert latest_prices(["AAA_USDT"], 900_000) == {"AAA_USDT": Decimal("100")}
    assert latest_price("AAA_USDT", 900_000) == Decimal("100")
