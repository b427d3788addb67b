"""Whether a replay of recorded candles fits the account of the database it is stored in.

A replay publishes its candles into the pipeline: they are decided against this database's account, at their own
market time. Two accounts it would wreck are refused before anything is stored:

* an account counted in another quote currency (``marketdata.watchlist.account_quote``): BTC-quoted entries would
  be sized from USDT money, and the USDT equity labelled BTC;
* an account holding positions or waiting orders when the database already has market data newer than the
  replay's first candle: the decisions' clock would go back to the replay's time, where those positions have no
  price yet (valued at 0: a drawdown HALT that outlives the replay) or prices from before their entry.

``refusal`` is the rule; ``replay_refusal`` reads the database for it. ``quote_refusal`` is its first half for any
feed (``serve``'s simulated market, ``run_feed --source sim|mexc``): new markets in the account's quote currency only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Max

from ground.amounts import iso_utc, quote_of
from marketdata.feeds.replay import ReplaySource, file_span
from marketdata.models import Candle
from marketdata.validation import CandleRow, known_at, validate_lines
from marketdata.watchlist import account_quote, symbols_in_view

from .models import Order, Position


@dataclass(frozen=True)
class StoredAccount:
    """What a replay would be decided against: the account's quote currency (None: a new database, whose quote the
    replay sets), the symbols it holds or waits to trade, and the newest stored candle's close after the first one the
    replay would newly store (None: none, or nothing held)."""

    quote: str | None
    held: tuple[str, ...]
    newest_ms: int | None


def refusal(account: StoredAccount, symbols: Sequence[str], first_ms: int | None) -> str | None:
    """Why a replay of ``symbols`` whose first candle closes at ``first_ms`` would wreck ``account`` (None: it fits)."""
    foreign = sorted(s for s in symbols if account.quote is not None and quote_of(s) != account.quote)
    if foreign:
        quotes = ", ".join(sorted({quote_of(s) for s in foreign}))
        return (
            f"{', '.join(foreign)} is quoted in {quotes} but this database's account counts its money in "
            f"{account.quote}: its orders would be sized from {account.quote} and its equity mislabelled"
        )
    if account.held and account.newest_ms is not None and first_ms is not None and first_ms < account.newest_ms:
        return (
            f"this database holds {', '.join(account.held)} and market data up to {iso_utc(account.newest_ms)}: "
            f"a replay from {iso_utc(first_ms)} would value them at that older time (no price then, or one from before "
            "they were bought)"
        )
    return None


def replay_refusal(sources: Sequence[ReplaySource]) -> str | None:
    """``refusal`` for a replay of ``sources`` into this database (the files are read only when something is held).

    A replay publishes only the candles it newly stores (the rest are already present): its clock starts at the
    first of those, judged against every stored candle. A file listed again beside an older one therefore hides
    nothing: its stored candles are not its own new ones, the older file's are."""
    symbols = sorted({s.symbol for s in sources})
    quote = account_quote() if symbols_in_view() else None
    held = set(Position.objects.filter(quantity__gt=0).values_list("symbol", flat=True))
    held |= set(Order.objects.filter(status=Order.Status.PENDING).values_list("symbol", flat=True))
    if not held:
        return refusal(StoredAccount(quote, (), None), symbols, None)
    firsts = [known_at(opened, source.interval) for source in sources if (opened := first_new(source)) is not None]
    first_ms = min(firsts) if firsts else None
    newest = None
    if first_ms is not None:
        newest = Candle.objects.filter(known_at__gt=first_ms).aggregate(newest=Max("known_at"))["newest"]
    return refusal(StoredAccount(quote, tuple(sorted(held)), newest), symbols, first_ms)


def quote_refusal(symbols: Sequence[str]) -> str | None:
    """Why markets ``symbols`` cannot feed this database's account: quoted in another currency than the one its money
    is counted in (None: they fit, or a new database, whose quote they set)."""
    from django.db import connection

    if Candle._meta.db_table not in connection.introspection.table_names():
        return None  # a database without tables yet: no account
    quote = account_quote() if symbols_in_view() else None
    return refusal(StoredAccount(quote, (), None), symbols, None)


def first_new(source: ReplaySource) -> int | None:
    """The open time of the file's first valid candle not stored yet (None: every one is)."""
    span = file_span(source)
    if span is None:
        return None
    stored = set(
        Candle.objects.filter(
            symbol=source.symbol, interval=source.interval, timestamp__gte=span[0], timestamp__lte=span[1]
        ).values_list("timestamp", flat=True)
    )
    with source.path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for item in validate_lines(handle, source.interval):
            if isinstance(item, CandleRow) and item.timestamp not in stored:
                return item.timestamp
    return None
