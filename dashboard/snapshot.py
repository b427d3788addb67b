"""What the dashboard and /api/status/ show, as plain JSON-ready data. Read-only queries, no side effects.

``build_snapshot()`` is the whole page state (sent on websocket connect, served at /api/dashboard/snapshot/);
``status()`` is the part /api/status/ returns. The account figures (equity, daily P&L, drawdown, exposure) are
``risk.status.account_summary``: the one account view the risk engine judges (``risk.account_view``); money,
quantities and ratios are exact decimal strings (``ground.amounts.plain``), as in every other endpoint. The
equity curve alone replays the fills (marked at fill prices).

One clock: every time on the page is market time (``market_time_ms``; the simulated market's or a replay's time
while one drives the clock, else the system clock), labelled with what drives it (``clock``); the wall clock
(``wall_time_ms``) is shown beside it.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Max

from cdb_project.ops import run_checks
from execution.live import live_trading_enabled
from execution.models import Order, Portfolio
from ground.amounts import QUOTE_DECIMALS, counted, plain
from ground.timeutil import now_ms as wall_now_ms
from marketdata import clock
from marketdata.models import Candle
from marketdata.screener import ScreenCandle, rank
from marketdata.stale import last_seen_from_store
from marketdata.watchlist import current_watchlist, symbols_in_view
from risk.account_view import AccountView, account_view
from risk.models import Alert, RiskParameters, TradingState
from risk.order_service import order_result_event
from risk.state import state_snapshot
from risk.status import account_summary, open_position_rows
from trading.chart_service import base_interval
from trading.models import Signal

ROWS = 25
EQUITY_POINTS = 300
ZERO = Decimal(0)


# --- time and mode ------------------------------------------------------------------------------------


def market_now_ms() -> int:
    """The market clock (a replay's event time while one drives time), else the system clock."""
    return clock.now_ms()


def trading_mode() -> str:
    """LIVE exactly when the execution service would send live orders (the switch and both keys); else PAPER."""
    return "LIVE" if live_trading_enabled() else "PAPER"


# --- prices, positions and the equity curve --------------------------------------------------------------


def latest_closes() -> dict[str, dict]:
    """{symbol: {timestamp, price, volume}} from the newest stored candle of each symbol (the chart's prices)."""
    newest = Candle.objects.values("symbol").annotate(ts=Max("timestamp"))
    out: dict[str, dict] = {}
    for row in newest:
        candle = (
            Candle.objects.filter(symbol=row["symbol"], timestamp=row["ts"])
            .order_by("interval")
            .values("timestamp", "close", "volume")
            .first()
        )
        if candle is not None:
            out[row["symbol"]] = {
                "timestamp": candle["timestamp"],
                "price": candle["close"],
                "volume": candle["volume"],
            }
    return out


def _fills():
    orders = Order.objects.filter(status__in=[Order.Status.FILLED, Order.Status.PARTIALLY_FILLED])
    orders = orders.exclude(price__isnull=True)
    return orders.order_by("event_time", "id").values_list(
        "event_time", "symbol", "side", "filled_quantity", "price", "fees"
    )


def _replay(
    initial: Decimal, fills
) -> tuple[Decimal, dict[str, Decimal], dict[str, Decimal], list[tuple[int, Decimal]]]:
    """Cash, holdings, last fill price per symbol and the equity after each fill, marked at fill prices."""
    cash, holdings, marks, curve = initial, {}, {}, []
    for event_time, symbol, side, quantity, price, fees in fills:
        if side == "BUY":
            cash -= quantity * price + fees
            holdings[symbol] = holdings.get(symbol, ZERO) + quantity
        else:
            cash += quantity * price - fees
            holdings[symbol] = holdings.get(symbol, ZERO) - quantity
        marks[symbol] = price
        curve.append((event_time, cash + sum((q * marks[s] for s, q in holdings.items()), start=ZERO)))
    return cash, holdings, marks, curve


def positions(view: AccountView) -> list[dict]:
    """The open positions as ``risk.status`` values them (the account view's prices), in the page's names."""
    return [
        {
            "symbol": row["symbol"],
            "quantity": row["quantity"],
            "avg_entry_price": row["avg_entry_price"],
            "price": row["last_price"],
            "market_value": row["value"],
            "unrealized_pnl": row["unrealized_pnl"],
            "unrealized_pnl_pct": row["unrealized_pnl_pct"],
        }
        for row in open_position_rows(view)
    ]


def valued(view: AccountView) -> dict[str, dict]:
    """What a price move of each symbol moves, as ``risk.account_view`` values the account: the equity by the
    quantity held less what waiting SELLs will sell (their proceeds are fixed), the exposure by that plus what
    waiting BUYs will buy. The page re-prices its cards with these on a pushed candle (``reprice`` in
    static/cdb/account.js), so they agree with the server's while orders wait, not only with the position rows."""
    held, entering = view.account.positions, view.account.entering
    return {
        symbol: {
            "equity": plain(held.get(symbol, ZERO)),
            "exposure": plain(held.get(symbol, ZERO) + entering.get(symbol, ZERO)),
        }
        for symbol in sorted(set(held) | set(entering))
    }


def equity_curve(current_equity: str, now: int) -> list[dict]:
    """Equity after every fill (marked at fill prices), thinned to EQUITY_POINTS, ending with the equity now."""
    portfolio = Portfolio.load()
    _, _, _, curve = _replay(portfolio.initial_capital, _fills())
    points = [(curve[0][0] - 1 if curve else now - 1, portfolio.initial_capital)] + curve
    if len(points) > EQUITY_POINTS:
        step = len(points) / EQUITY_POINTS
        points = [points[int(i * step)] for i in range(EQUITY_POINTS)]
    out = [{"t": t, "equity": plain(e)} for t, e in points]
    out.append({"t": max(now, out[-1]["t"] + 1), "equity": current_equity})
    return out


# --- market data: freshness and the watch list -----------------------------------------------------------


def _stale_timeout_ms() -> int:
    return int(RiskParameters.load().data_stale_timeout_sec) * 1000


def freshness(now: int | None = None) -> list[dict]:
    """Per watched symbol: when data was last seen (market time), how old it is, and whether it is stale."""
    now = market_now_ms() if now is None else now
    watched = symbols_in_view()
    seen = last_seen_from_store(watched)
    timeout = _stale_timeout_ms()
    out = []
    for symbol in watched:
        last = seen.get(symbol)
        # never negative: data stamped after the clock (a replay of later candles) is as fresh as can be, and
        # how far it is ahead is said apart (the simulated market gives that symbol no candle until it is past it)
        age = max(0, now - last) // 1000 if last is not None else None  # whole seconds
        ahead = max(0, last - now) // 1000 if last is not None else 0
        out.append(
            {
                "symbol": symbol,
                "last_seen_ms": last,
                "age_sec": age,
                "ahead_sec": ahead,
                "stale": last is None or now - last > timeout,
            }
        )
    return out


def _live_scores(symbols: list[str], now: int) -> dict[str, object]:
    """The screener's figures (``marketdata.screener.rank``) for ``symbols`` over the last LOOKBACK_MINUTES of
    their stored candles up to ``now``, for when no screener list is stored yet (embedded mode, a replay)."""
    lookback_ms = int(settings.LOOKBACK_MINUTES) * 60_000
    bases = {symbol: base_interval(symbol) for symbol in symbols}
    series: dict[str, list[ScreenCandle]] = {}
    rows = Candle.objects.filter(symbol__in=symbols, timestamp__gt=now - lookback_ms, timestamp__lte=now)
    for symbol, interval, ts, o, c, v in rows.order_by("timestamp").values_list(
        "symbol", "interval", "timestamp", "open", "close", "volume"
    ):
        if interval == bases[symbol]:
            series.setdefault(symbol, []).append(ScreenCandle(ts, o, c, v))
    scores = rank(series, now_ms=now, lookback_ms=lookback_ms, top_n=len(symbols), universe=symbols)
    return {score.symbol: score for score in scores}


def watchlist(now: int | None = None) -> dict:
    """The screener's stored list; without one, the watched symbols ranked live the same way.
    ``pct_change`` is a fraction (0.012 = +1.2 %) over ``lookback_minutes``; ``quote_volume`` Σ close × volume."""
    latest = current_watchlist()
    if latest is None:
        now = market_now_ms() if now is None else now
        symbols = symbols_in_view()
        scores = _live_scores(symbols, now)
        ranked = sorted(symbols, key=lambda s: (scores[s].rank if s in scores else len(symbols) + 1, s))
        entries = [
            {
                "rank": i + 1,
                "symbol": s,
                "pct_change": plain(scores[s].pct_change) if s in scores else None,
                "quote_volume": plain(scores[s].quote_volume) if s in scores else None,
                "score": plain(scores[s].score) if s in scores else None,
            }
            for i, s in enumerate(ranked)
        ]
        return {
            "as_of_ms": now,
            "source": "watched symbols, ranked live",
            "lookback_minutes": int(settings.LOOKBACK_MINUTES),
            "entries": entries,
        }
    return {
        "as_of_ms": latest.as_of_ms,
        "source": "screener",
        "lookback_minutes": latest.lookback_minutes,
        "entries": [
            {
                "rank": e.rank,
                "symbol": e.symbol,
                "pct_change": plain(e.pct_change),
                "quote_volume": plain(e.quote_volume),
                "score": plain(e.score),
            }
            for e in latest.entries.order_by("rank")
        ],
    }


# --- service health ---------------------------------------------------------------------------------


def health() -> dict:
    """The service-health card as ``{ok, detail}`` per part: the database on this request's own connection
    (the page reads it anyway), Redis and the workers through the checks behind ``/health``, the notification
    destinations when there are any, and (live trading) the book against the exchange's balances."""
    out = _services_health()
    notifications = _notifications_health()
    if notifications is not None:
        out["notifications"] = notifications
    balances = _balances_health()
    if balances is not None:
        out["balances"] = balances
    return out


def _services_health() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        out = {"database": {"ok": True, "detail": connection.vendor}}
    except Exception as error:
        out = {"database": {"ok": False, "detail": f"{type(error).__name__}: {error}"[:200]}}
    if not settings.REDIS_URL:
        out["redis"] = {"ok": True, "detail": "not used (embedded)"}
        out["workers"] = {"ok": True, "detail": "in-process (embedded)"}
        return out
    results = run_checks(parts=("redis", "workers"))
    redis_ok, redis_detail = results["redis"]
    out["redis"] = {"ok": redis_ok, "detail": "ping ok" if redis_ok else str(redis_detail)}
    workers_ok, workers = results["workers"]
    if not workers_ok:
        out["workers"] = {"ok": False, "detail": str(workers)}
    else:
        detail = f"{counted(workers, 'worker')} answered" if workers else "no worker answered"
        out["workers"] = {"ok": bool(workers), "detail": detail}
    return out


def _balances_health() -> dict | None:
    """Live trading: whether the book matches the exchange's balances (``risk.reconcile``)."""
    try:
        from risk.reconcile import balance_health

        return balance_health()
    except Exception as error:  # the card reports, never fails the page
        return {"ok": False, "detail": f"{type(error).__name__}: {error}"[:200]}


def _notifications_health() -> dict | None:
    try:
        from notify.service import health as notify_health

        return notify_health()
    except Exception as error:  # the card reports, never fails the page
        return {"ok": False, "detail": f"{type(error).__name__}: {error}"[:200]}


# --- tables -------------------------------------------------------------------------------------------


def signal_row(s: Signal) -> dict:
    return {
        "symbol": s.symbol,
        "side": s.side,
        "confidence": plain(s.confidence),
        "reason": s.reason,
        "strategy": s.strategy,
        "price": plain(s.price),
        "timestamp": s.timestamp,
    }


def alert_row(a: Alert) -> dict:
    return {"level": a.level, "code": a.code, "message": a.message, "symbol": a.symbol, "timestamp": a.timestamp}


def status() -> dict:
    """What GET /api/status/ returns."""
    now = market_now_ms()
    return {
        "trading_state": state_snapshot(TradingState.load()),
        "mode": trading_mode(),
        "embedded": settings.EMBEDDED,
        "market_time_ms": now,
        "wall_time_ms": wall_now_ms(),
        "clock": clock.clock_note(),
        "account": account_summary(),
        "freshness": freshness(now),
        "health": health(),
    }


def build_snapshot() -> dict:
    """The whole dashboard state."""
    data = status()
    view = account_view(TradingState.load().state)
    prices = {
        symbol: {"timestamp": p["timestamp"], "price": plain(p["price"]), "volume": plain(p["volume"])}
        for symbol, p in latest_closes().items()
    }
    # The equity now is marked at the newest closes: its point on the curve sits at their time.
    as_of = max((p["timestamp"] for p in prices.values()), default=data["market_time_ms"])
    data.update(
        interval=settings.INTERVAL,
        quote_decimals=dict(QUOTE_DECIMALS),  # the places a price or an amount of each quote is read in
        prices=prices,
        positions=positions(view),
        valued=valued(view),
        watchlist=watchlist(),
        equity_curve=equity_curve(data["account"]["equity"], as_of),
        order_results=[order_result_event(o) for o in Order.objects.exclude(status=Order.Status.PENDING)[:ROWS]],
        signals=[signal_row(s) for s in Signal.objects.all()[:ROWS]],
        # by their own (market) time, the one the table shows: a halt sorts among the risk alerts around it
        alerts=[alert_row(a) for a in Alert.objects.order_by("-timestamp", "-id")[:ROWS]],
    )
    return data
