"""The watch list: which symbols may be traded.

``is_tradable(symbol)`` is the one question the signal/risk side asks:

1. a SYMBOL_WHITELIST is set and the symbol is not on it → False;
2. the symbol is being replayed or simulated (``FeedSymbol``) → True, no screener needed;
3. a screener list exists → True only if the symbol is on the latest list;
4. no screener list yet → True (nothing restricts it).

``run_screener()`` is the shell around ``marketdata.screener.rank``: it loads the look-back window's candles,
ranks SYMBOL_WHITELIST (or every symbol with candles when no whitelist is set) and stores the list with its
scores. It runs every minute from Celery beat (``marketdata.tasks.screen_symbols``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction

from ground.amounts import common_quote

from . import clock
from .models import Candle, FeedSymbol, WatchList, WatchListEntry
from .screener import ScreenCandle, rank
from .stale import watched_symbols
from .validation import interval_ms

_Q = Decimal("1e-12")


def register_feed_symbols(symbols: Iterable[str], source: str) -> None:
    """A replay or simulation drives these symbols: they are tradable without a screener list, and they are
    the ones the data-stale watch expects data for. A new run replaces the symbols of the previous one."""
    symbols = list(symbols)
    with transaction.atomic():
        FeedSymbol.objects.exclude(symbol__in=symbols).delete()
        for symbol in symbols:
            FeedSymbol.objects.update_or_create(symbol=symbol, defaults={"source": source})


def clear_feed_symbols() -> None:
    """A live feed starts: replayed/simulated symbols no longer bypass the screener."""
    FeedSymbol.objects.all().delete()


def current_watchlist() -> WatchList | None:
    return WatchList.objects.order_by("-as_of_ms", "-id").first()


def is_tradable(symbol: str) -> bool:
    """Rules 2–4 of the module's docstring in one statement: it is asked for every entry decision."""
    whitelist = settings.SYMBOL_WHITELIST
    if whitelist and symbol not in whitelist:
        return False
    feed, lists, entries = (
        connection.ops.quote_name(model._meta.db_table) for model in (FeedSymbol, WatchList, WatchListEntry)
    )
    latest = f"SELECT id FROM {lists} ORDER BY as_of_ms DESC, id DESC LIMIT 1"
    sql = (
        f"SELECT EXISTS (SELECT 1 FROM {feed} WHERE symbol = %s) OR NOT EXISTS (SELECT 1 FROM {lists}) "  # noqa: S608
        f"OR EXISTS (SELECT 1 FROM {entries} WHERE watchlist_id = ({latest}) AND symbol = %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [symbol, symbol])
        return bool(cursor.fetchone()[0])


def run_screener(now_ms: int | None = None) -> WatchList:
    """Rank and store the watch list as of ``now_ms`` (default: the market clock)."""
    now = clock.now_ms() if now_ms is None else now_ms
    lookback_minutes = int(settings.LOOKBACK_MINUTES)
    top_n = int(settings.TOP_N)
    interval = settings.INTERVAL
    lookback_ms = lookback_minutes * 60_000
    # the window covers candles that opened in [now - lookback, now - one interval]: closed ones only
    end = now - interval_ms(interval)
    query = Candle.objects.filter(interval=interval, timestamp__gte=now - lookback_ms, timestamp__lte=end)
    universe = list(settings.SYMBOL_WHITELIST) or None
    if universe:
        query = query.filter(symbol__in=universe)
    candles: dict[str, list[ScreenCandle]] = defaultdict(list)
    for symbol, ts, o, c, v in query.values_list("symbol", "timestamp", "open", "close", "volume"):
        candles[symbol].append(ScreenCandle(ts, o, c, v))
    scores = rank(candles, now_ms=end, lookback_ms=lookback_ms - interval_ms(interval), top_n=top_n, universe=universe)
    with transaction.atomic():
        watchlist = WatchList.objects.create(
            as_of_ms=now, lookback_minutes=lookback_minutes, top_n=top_n, interval=interval
        )
        WatchListEntry.objects.bulk_create(
            WatchListEntry(
                watchlist=watchlist,
                rank=s.rank,
                symbol=s.symbol,
                pct_change=s.pct_change.quantize(_Q),
                quote_volume=s.quote_volume.quantize(_Q),
                score=s.score,
            )
            for s in scores
        )
    return watchlist


def symbols_in_view() -> list[str]:
    """The data-stale watch's symbols; when it watches nothing yet, every symbol with stored candles."""
    watched = list(watched_symbols())
    return watched or list(Candle.objects.order_by("symbol").values_list("symbol", flat=True).distinct())


def account_quote() -> str:
    """The quote currency the account's money is counted in: the one the watched symbols share, else USDT."""
    return common_quote(symbols_in_view())
