"""The dashboard's price chart (``GET /api/chart/``): stored candles, the strategy's indicators, fills and stops.

Reads only; the arithmetic is in ``trading/chart.py``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db.models import Sum

from execution.models import Order, Trade
from ground.amounts import decimals_for, plain, quote_of
from marketdata.models import Candle

from .chart import INTERVALS, Bar, coarser_intervals, indicator_series, interval_ms, resample, strategy_indicators

MAX_BARS = 1000
MAX_BASE_ROWS = 200_000
WARMUP_FACTOR = 10  # bars before the first shown: an EMA seeded that far back equals one seeded at the start to ~1e-9


def base_interval(symbol: str) -> str | None:
    """The interval the symbol's candles are stored at: the configured INTERVAL when stored, else the finest one."""
    stored = set(Candle.objects.filter(symbol=symbol).values_list("interval", flat=True).distinct())
    if not stored:
        return None
    if settings.INTERVAL in stored:
        return settings.INTERVAL
    known = [i for i in stored if i in INTERVALS]
    return min(known, key=interval_ms) if known else sorted(stored)[0]


def _bars(symbol: str, interval: str, until: int | None, count: int) -> list[Bar]:
    rows = Candle.objects.filter(symbol=symbol, interval=interval)
    if until is not None:
        rows = rows.filter(timestamp__lte=until)
    values = rows.order_by("-timestamp").values_list("timestamp", "open", "high", "low", "close", "volume")[:count]
    return [Bar(*row) for row in reversed(values)]  # the stored Decimals: the candles go out exact


def exit_reason_label(reason: str) -> str:
    """``stop_loss`` → ``stop-loss``, ``drawdown_close`` → ``drawdown close``; ``signal``, ``operator`` as they are."""
    labels = {"stop_loss": "stop-loss", "drawdown_close": "drawdown close", "operator_close": "operator"}
    return labels.get(reason, reason)


def fills(symbol: str, since: int | None, until: int | None) -> list[dict]:
    """Filled orders of the symbol (oldest first) with what the chart's marker shows on hover."""
    orders = Order.objects.filter(
        symbol=symbol, status__in=[Order.Status.FILLED, Order.Status.PARTIALLY_FILLED], price__isnull=False
    )
    if since is not None:
        orders = orders.filter(event_time__gte=since)
    if until is not None:
        orders = orders.filter(event_time__lte=until)
    orders = list(orders.order_by("event_time", "id"))
    pnl = dict(
        Trade.objects.filter(exit_order__in=[o.pk for o in orders if o.side == "SELL"])
        .values("exit_order")
        .annotate(total=Sum("profit_loss"))
        .values_list("exit_order", "total")
    )
    return [
        {
            "time": o.event_time,
            "side": o.side,
            "price": plain(o.price),
            "quantity": plain(o.filled_quantity),
            "fee": plain(o.fees),
            "purpose": o.purpose,
            "reason": exit_reason_label("signal" if o.purpose == Order.Purpose.EXIT else o.purpose)
            if o.side == "SELL"
            else "entry",
            "detail": o.reason,
            "profit_loss": plain(pnl[o.pk]) if o.pk in pnl and pnl[o.pk] is not None else None,
            "client_order_id": o.client_order_id,
        }
        for o in orders
    ]


def stops(symbol: str) -> list[dict]:
    """The stop of each open lot, as the risk manager checks it (``Trade.stop_loss``: its fill price × (1 −
    STOP_LOSS_PCT), kept per trade)."""
    out = []
    for trade in Trade.objects.filter(symbol=symbol, status=Trade.Status.OPEN).order_by("entry_time", "id"):
        if trade.stop_loss is None:
            continue
        out.append(
            {
                "trade_id": trade.trade_id,
                "price": plain(trade.stop_loss),
                "entry_price": plain(trade.entry_price),
                "quantity": plain(trade.quantity),
            }
        )
    return out


def chart_data(symbol: str, interval: str | None = None, until: int | None = None, limit: int = 300) -> dict:
    """Candles (the last ``limit`` bars up to ``until``), indicators, fills and open lots' stops of ``symbol``.

    Raises ValueError for an interval the stored candles cannot be resampled to."""
    limit = max(1, min(int(limit), MAX_BARS))
    base = base_interval(symbol)
    strategy, specs, warmup = strategy_indicators(settings.STRATEGY)
    out = {
        "symbol": symbol,
        "quote_decimals": decimals_for(quote_of(symbol)),  # fees and P&L are read in the quote's places
        "strategy": strategy,
        "base_interval": base,
        "interval": interval or base,
        "intervals": coarser_intervals(base) if base in INTERVALS else [base] if base else [],
        "candles": [],
        "indicators": [],
        "fills": [],
        "stops": [],
    }
    if base is None:
        return out
    interval = interval or base
    if interval not in out["intervals"]:
        raise ValueError(
            f"interval {interval!r}: {symbol} is stored at {base}; use one of {', '.join(out['intervals'])}"
        )
    factor = interval_ms(interval) // interval_ms(base) if base in INTERVALS else 1
    warm = WARMUP_FACTOR * warmup
    bars = _bars(symbol, base, until, min((limit + warm) * factor, MAX_BASE_ROWS))
    if factor > 1:
        bars = resample(bars, interval_ms(interval))
    shown = bars[-limit:]
    if not shown:
        return out
    first, last = shown[0].time, shown[-1].time
    out.update(
        interval_ms=interval_ms(interval) if interval in INTERVALS else None,
        candles=[bar.as_json() for bar in shown],
        indicators=indicator_series(specs, bars, first),
        fills=fills(symbol, first, last + interval_ms(interval) - 1 if interval in INTERVALS else None),
        stops=stops(symbol),
    )
    return out


def page_indicators(symbol: str, interval: str, timestamps: list[int]) -> list[dict]:
    """The strategy's indicator lines at ``timestamps`` (stored candles of one symbol and interval, a page of
    ``/api/candles/``), warmed up on the candles before the first."""
    _, specs, warmup = strategy_indicators(settings.STRATEGY)
    if not timestamps:
        return indicator_series(specs, [], 0)
    first, last = min(timestamps), max(timestamps)
    before = _bars(symbol, interval, first - 1, WARMUP_FACTOR * warmup)
    rows = Candle.objects.filter(symbol=symbol, interval=interval, timestamp__gte=first, timestamp__lte=last)
    values = rows.order_by("timestamp").values_list("timestamp", "open", "high", "low", "close", "volume")
    page = [Bar(*row) for row in values]
    return indicator_series(specs, before + page, first)


def backtest_chart(report: dict, symbol: str, max_bars: int = 20_000) -> dict:
    """A stored backtest's chart of ``symbol``: the candles of its files (read again from disk), the run's strategy
    indicators and its fills. Raises FileNotFoundError when the run's file for the symbol is not readable here."""
    from .backtest import BacktestInputError, read_bars

    paths = [p for p in report.get("files", []) if Path(p).name.startswith(f"{symbol}-")]
    if not paths:
        raise FileNotFoundError(f"the run has no file for {symbol}")
    try:
        rows = [b for b in read_bars(paths) if b.symbol == symbol]
    except BacktestInputError as error:
        raise FileNotFoundError(str(error)) from None
    base = rows[0].interval if rows else None
    bars = [
        Bar(b.row.timestamp, b.candle.open, b.candle.high, b.candle.low, b.candle.close, b.candle.volume) for b in rows
    ]
    interval = base
    while len(bars) > max_bars and interval in INTERVALS:  # a long run: coarser bars keep the page light
        coarser = [i for i in coarser_intervals(interval) if i != interval]
        if not coarser:
            break
        interval = coarser[0]
        bars = resample(bars, interval_ms(interval))
    params = {
        k.removeprefix("strategy."): v for k, v in report.get("parameters", {}).items() if k.startswith("strategy.")
    }
    spec = report["strategy"] + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
    _, specs, _ = strategy_indicators(spec)
    pnl: dict[str, Decimal] = {}  # an exit's P&L: its closed lots', by the exit order (two exits share a candle)
    for trade in report.get("trades", []):
        exit_order = trade.get("exit_client_order_id")
        if trade["symbol"] == symbol and exit_order and trade["profit_loss"] is not None:
            pnl[exit_order] = pnl.get(exit_order, Decimal(0)) + Decimal(trade["profit_loss"])
    fills_ = [
        {
            "time": o["timestamp"],
            "side": o["side"],
            "price": o["price"],
            "quantity": o["filled_quantity"],
            "fee": o["fees"],
            "purpose": o["purpose"],
            "reason": exit_reason_label("signal" if o["purpose"] == "exit" else o["purpose"])
            if o["side"] == "SELL"
            else "entry",
            "detail": o["reason"],
            "profit_loss": str(pnl[o["client_order_id"]]) if o["client_order_id"] in pnl else None,
            "client_order_id": o["client_order_id"],
        }
        for o in report.get("orders", [])
        if o["symbol"] == symbol and o["status"] in ("FILLED", "PARTIALLY_FILLED") and o["price"]
    ]
    return {
        "symbol": symbol,
        "quote_decimals": decimals_for(quote_of(symbol)),
        "strategy": report["strategy"],
        "base_interval": base,
        "interval": interval,
        "interval_ms": interval_ms(interval) if interval in INTERVALS else None,
        "intervals": [interval] if interval else [],
        "candles": [bar.as_json() for bar in bars],
        "indicators": indicator_series(specs, bars, bars[0].time if bars else 0),
        "fills": fills_,
        "stops": [],
    }
