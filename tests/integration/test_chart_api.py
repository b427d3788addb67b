"""The chart endpoints and the closed-trade totals over HTTP (Django's test client, the real database), and the pure
resampling and indicator code behind them."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from execution.models import Order, Trade
from ground.amounts import plain
from marketdata.models import Candle
from tests.integration.test_api import make_user, token_client
from tests.support.paths import CANDLES
from trading.chart import Bar, coarser_intervals, indicator_series, resample, strategy_indicators
from trading.indicators import EMA, RSI, SMA
from trading.models import BacktestRun

T0 = 1_730_419_200_000  # 2024-11-01 00:00 UTC, a round 15 minutes
MINUTE = 60_000
DATA = CANDLES / "ETH_BTC-5m.csv"


# --- pure: resampling and indicator lines -------------------------------------------------------------------


def test_resample_keeps_open_high_low_close_and_sums_volume():
    bars = [Bar(T0 + i * MINUTE, 10 + i, 12 + i, 9 + i, 11 + i, 1.5) for i in range(7)]
    five = resample(bars, 5 * MINUTE)
    assert five == [Bar(T0, 10, 16, 9, 15, 7.5), Bar(T0 + 5 * MINUTE, 15, 18, 14, 17, 3.0)]
    assert coarser_intervals("5m") == ["5m", "15m", "30m", "1h", "4h", "1d"]


def test_indicator_lines_are_the_strategy_classes_fed_close_by_close():
    _, specs, warmup = strategy_indicators("momentum:ema_fast=5,ema_slow=9,trend_period=20")
    assert [s.name for s in specs] == ["EMA5", "EMA9", "SMA20", "RSI14"] and warmup == 21
    bars = [Bar(T0 + i * MINUTE, 1, 1, 1, 100 + (i % 7) - i / 10, 1) for i in range(60)]
    lines = indicator_series(specs, bars, shown_from=T0 + 30 * MINUTE)
    ema, sma, rsi = EMA(5), SMA(20), RSI(14)
    expected = {"EMA5": [], "SMA20": [], "RSI14": []}
    for bar in bars:
        for name, ind in (("EMA5", ema), ("SMA20", sma), ("RSI14", rsi)):
            value = ind.update(bar.close)
            if bar.time >= T0 + 30 * MINUTE:
                expected[name].append([bar.time, plain(value)])  # the float computed, as an exact decimal string
    by_name = {line["name"]: line for line in lines}
    for name, values in expected.items():
        assert by_name[name]["values"] == values
    assert by_name["RSI14"]["pane"] == "rsi" and by_name["RSI14"]["guides"] == [40.0, 70.0]
    assert strategy_indicators("sma_cross")[1][0].name == "SMA5"


# --- over HTTP ------------------------------------------------------------------------------------------


def _candles(symbol: str, count: int, interval: str = "1m") -> None:
    Candle.objects.bulk_create(
        Candle(
            symbol=symbol,
            interval=interval,
            timestamp=T0 + i * MINUTE,
            open=Decimal(100 + i),
            high=Decimal(101 + i),
            low=Decimal(99 + i),
            close=Decimal(100 + i) + Decimal("0.5"),
            volume=Decimal(2),
        )
        for i in range(count)
    )


@pytest.mark.django_db
def test_chart_endpoint_candles_indicators_fills_and_stops(settings):
    settings.STRATEGY = "momentum"
    settings.INTERVAL = "1m"
    _candles("BTC_USDT", 400)
    buy = Order.objects.create(
        client_order_id="c1",
        symbol="BTC_USDT",
        side="BUY",
        quantity=1,
        requested_price=300,
        price=300,
        filled_quantity=1,
        fees=Decimal("0.3"),
        status="FILLED",
        event_time=T0 + 300 * MINUTE,
        stop_loss=294,
    )
    Trade.objects.create(
        trade_id="T1",
        order=buy,
        symbol="BTC_USDT",
        quantity=1,
        entry_price=300,
        entry_time=datetime.fromtimestamp((T0 + 300 * MINUTE) / 1000, UTC),
        stop_loss=294,  # the lot's own stop, as the executor stores it
        status="OPEN",
    )
    client = token_client(make_user("viewer"))
    body = client.get("/api/chart/?symbol=BTC_USDT&limit=100").json()
    assert body["interval"] == "1m" and body["interval_ms"] == MINUTE and len(body["candles"]) == 100
    assert body["candles"][-1]["time"] == T0 + 399 * MINUTE
    assert {line["name"]: len(line["values"]) for line in body["indicators"]} == {
        "EMA12": 100,
        "EMA26": 100,
        "SMA50": 100,
        "RSI14": 100,
    }
    assert [(f["time"], f["side"], f["price"]) for f in body["fills"]] == [(T0 + 300 * MINUTE, "BUY", "300")]
    assert [s["price"] for s in body["stops"]] == ["294"]
    fifteen = client.get("/api/chart/?symbol=BTC_USDT&interval=15m&limit=10").json()
    assert [c["time"] % (15 * MINUTE) for c in fifteen["candles"]] == [0] * 10 and fifteen["candles"][-1][
        "volume"
    ] == "20"  # exact decimal strings, as every JSON
    assert all(isinstance(c[k], str) for c in body["candles"] for k in ("open", "high", "low", "close", "volume"))
    assert client.get("/api/chart/?symbol=BTC_USDT&interval=7m").status_code == 400
    assert client.get("/api/chart/").status_code == 400
    assert client.get("/api/chart/?symbol=NOPE_USDT").json()["candles"] == []

    page = client.get(f"/api/candles/?symbol=BTC_USDT&interval=1m&since={T0 + 350 * MINUTE}&indicators=1").json()
    ema = {line["name"]: line for line in page["indicators"]}["EMA12"]["values"]
    assert [t for t, _ in ema] == [c["timestamp"] for c in page["results"]]
    assert float(ema[-1][1]) == pytest.approx(float(body["indicators"][0]["values"][-1][1]), rel=1e-12)
    assert client.get("/api/candles/?indicators=1").status_code == 400


@pytest.mark.django_db
def test_trade_totals_and_the_day_filter():
    client = token_client(make_user("viewer"))
    day = datetime(2024, 11, 1, tzinfo=UTC)
    for i, (pnl, closed) in enumerate([(10, day), (-4, day + timedelta(hours=5)), (7, day + timedelta(days=1))]):
        order = Order.objects.create(
            client_order_id=f"c{i}", symbol="BTC_USDT", side="BUY", quantity=1, requested_price=1, event_time=i
        )
        Trade.objects.create(
            trade_id=f"T{i}",
            order=order,
            symbol="BTC_USDT",
            quantity=1,
            entry_price=100,
            entry_time=closed - timedelta(minutes=30),
            exit_price=100 + pnl,
            exit_time=closed,
            profit_loss=pnl,
            entry_fees=Decimal("0.1"),
            exit_fees=Decimal("0.1"),
            exit_reason="stop_loss" if pnl < 0 else "signal",
            status="CLOSED",
        )
    totals = client.get("/api/trades/totals/?status=CLOSED").json()
    assert totals["trades"] == 3 and totals["wins"] == 2 and Decimal(totals["profit_loss"]) == 13
    assert Decimal(totals["fees"]) == Decimal("0.6")
    on_day = client.get("/api/trades/?status=CLOSED&day=2024-11-01").json()["results"]
    assert sorted(t["trade_id"] for t in on_day) == ["T0", "T1"] and on_day[0]["duration_seconds"] == "1800"
    assert Decimal(client.get("/api/trades/totals/?day=2024-11-01").json()["profit_loss"]) == 6
    assert client.get("/api/trades/?day=yesterday").status_code == 400


@pytest.mark.django_db
@pytest.mark.shared_data
def test_backtest_chart_reads_the_runs_file(tmp_path):
    path = tmp_path / "ETH_BTC-5m.csv"
    path.write_text("\n".join(DATA.read_text().splitlines()[:600]) + "\n")
    call_command("backtest", "--data", str(path), "--capital", "1", "--no-progress", "--save", stdout=io.StringIO())
    run = BacktestRun.objects.get()
    client = token_client(make_user("viewer"))
    body = client.get(f"/api/backtests/{run.pk}/chart/?symbol=ETH_BTC").json()
    fills = [o for o in run.report["orders"] if o["status"] in ("FILLED", "PARTIALLY_FILLED")]
    assert len(body["candles"]) == run.candles and len(body["fills"]) == len(fills)
    exits = [f for f in body["fills"] if f["side"] == "SELL"]
    closed = [t for t in run.report["trades"] if t["exit_time"] is not None]
    assert exits and sum(Decimal(f["profit_loss"]) for f in exits) == sum(Decimal(t["profit_loss"]) for t in closed)
    assert client.get(f"/api/backtests/{run.pk}/chart/?symbol=LTC_BTC").status_code == 400
    assert client.get(f"/api/backtests/{run.pk}/chart/").status_code == 400
    path.unlink()
    assert "no candles" in client.get(f"/api/backtests/{run.pk}/chart/?symbol=ETH_BTC").json()["symbol"][0]


@pytest.mark.django_db
def test_the_last_day_there_is_is_a_day_not_a_500(client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("viewer", password="pw-viewer-12345"))
    for path in ("/api/trades/?day=9999-12-31", "/api/trades/totals/?day=9999-12-31"):
        assert client.get(path).status_code == 200, path
    assert client.get("/api/trades/?day=2018-02-30").status_code == 400
