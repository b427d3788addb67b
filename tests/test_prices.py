"""Last prices at an event time: the one-query ``latest_prices`` agrees with ``latest_price`` symbol by symbol."""

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


def test_latest_prices_reads_the_last_close_at_or_before_the_time_across_intervals():
    _candle("AAA_USDT", "1m", 60_000, "10.123456789012")
    _candle("AAA_USDT", "1m", 120_000, "11")
    _candle("AAA_USDT", "5m", 180_000, "12.5")  # another interval still counts: the last trade price
    _candle("AAA_USDT", "1m", 240_000, "13")  # after the time asked for
    _candle("BBB_USDT", "1m", 60_000, "0.000000012345")
    _candle("CCC_USDT", "1m", 300_000, "99")  # nothing by then

    symbols = ["AAA_USDT", "BBB_USDT", "CCC_USDT", "ZZZ_USDT"]
    prices = latest_prices(symbols, 180_000)

    assert prices == {"AAA_USDT": Decimal("12.5"), "BBB_USDT": Decimal("0.000000012345")}
    assert all(isinstance(value, Decimal) for value in prices.values())
    assert prices == {s: latest_price(s, 180_000) for s in symbols if latest_price(s, 180_000) is not None}
    assert latest_prices(symbols, 59_999) == {}
    assert latest_prices([], 180_000) == {}
    assert latest_prices(["AAA_USDT", "AAA_USDT"], 120_000) == {"AAA_USDT": Decimal("11")}
