"""Storing candles and turning them into market_data events."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ground.amounts import stored
from ground.raw_rows import converted

from .models import Candle

# Set while publishing a candle that bulk_store has just stored: the persister then skips its look-up.
_prestored: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("prestored_candle", default=None)

CandleKey = tuple[str, str, int]  # symbol, interval, timestamp


def _decimal(value: float | int | str) -> Decimal:
    return Decimal(str(value))


def persist_market_data(event: dict) -> Candle | None:
    """Store the event's candle once (unique symbol + interval + timestamp); a repeat returns the stored row."""
    interval = event.get("interval") or settings.INTERVAL
    if _prestored.get() == (event["symbol"], interval, event["timestamp"]):
        return None  # stored a moment ago by bulk_store, in this very call chain
    key = {"symbol": event["symbol"], "interval": interval, "timestamp": event["timestamp"]}
    existing = Candle.objects.filter(**key).first()
    if existing is not None:
        return existing
    price = _decimal(event["price"])
    values = {
        "open": _decimal(event.get("open", price)),
        "high": _decimal(event.get("high", price)),
        "low": _decimal(event.get("low", price)),
        "close": _decimal(event.get("close", price)),
        "volume": _decimal(event["volume"]),
    }
    try:
        with transaction.atomic():
            return Candle.objects.create(**key, **values)
    except IntegrityError:  # another process stored it between our read and our insert
        return Candle.objects.get(**key)


def market_data_event(symbol: str, interval: str, timestamp: int, o, h, l, c, v) -> dict:  # noqa: E741
    """The market_data event for one candle; ``price`` is the close. Prices and volume are exact decimal strings
    (``ground.amounts.stored``: the store's 12 places), as in every JSON the system sends."""
    close = stored(c)
    return {
        "type": "market_data",
        "symbol": symbol,
        "interval": interval,
        "timestamp": int(timestamp),
        "price": close,
        "volume": stored(v),
        "open": stored(o),
        "high": stored(h),
        "low": stored(l),
        "close": close,
    }


def latest_price(symbol: str, at_or_before: int | None = None) -> Decimal | None:
    """The last close of ``symbol`` known at or before a market time (any interval): a candle is known at its
    close (``Candle.known_at``); at an equal close, the shorter interval's (the latest open)."""
    candles = Candle.objects.filter(symbol=symbol)
    if at_or_before is not None:
        candles = candles.filter(known_at__lte=at_or_before)
    close = candles.order_by("-known_at", "-timestamp").values_list("close", flat=True).first()
    return close


def latest_prices(symbols: Iterable[str], at_or_before: int) -> dict[str, Decimal]:
    """``latest_price`` of several symbols in one query (symbols without a candle by then are left out)."""
    return prices_of_rows(_latest_rows(symbols, at_or_before, "close"))


def latest_known_times(symbols: Iterable[str], at_or_before: int) -> dict[str, int]:
    """When the price ``latest_prices`` gives each symbol became known (its candle's close), in one query."""
    return {symbol: int(known) for symbol, known in _latest_rows(symbols, at_or_before, "known_at")}


def _latest_rows(symbols: Iterable[str], at_or_before: int, column: str) -> list[tuple]:
    """(symbol, ``column``) of each symbol's latest candle known by ``at_or_before`` (``latest_prices_query``)."""
    symbols = sorted(set(symbols))
    if not symbols:
        return []
    sql, params = latest_prices_query(symbols, at_or_before, column=column)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def latest_prices_query(symbols: Sequence[str], at_or_before: int, column: str = "close") -> tuple[str, list]:
    """The SQL of ``latest_prices`` (rows of symbol, close — or another ``column`` of the same candle) and its
    parameters, for a query to hold as a part."""
    table = connection.ops.quote_name(Candle._meta.db_table)
    one = (
        f'SELECT * FROM (SELECT "symbol", "{column}" FROM {table} WHERE "symbol" = %s AND "known_at" <= %s '
        f'ORDER BY "known_at" DESC, "timestamp" DESC LIMIT 1) AS p{{n}}'
    )  # at an equal close the shorter interval's candle (the latest open) gives the price, as in the backtest
    sql = " UNION ALL ".join(one.format(n=n) for n in range(len(symbols)))
    return sql, [value for symbol in symbols for value in (symbol, at_or_before)]


def prices_of_rows(rows: Iterable[Sequence]) -> dict[str, Decimal]:
    """{symbol: close} of (symbol, close) rows, the close as the ORM reads it (SQLite: its exact Decimal)."""
    return {symbol: close for symbol, close in converted(Candle, ("symbol", "close"), rows)}


@contextlib.contextmanager
def prestored(symbol: str, interval: str, timestamp: int) -> Iterator[None]:
    """Publishing a candle that is already stored: bus.publish still validates, the persister skips the store."""
    token = _prestored.set((symbol, interval, int(timestamp)))
    try:
        yield
    finally:
        _prestored.reset(token)


def publish_stored(symbol: str, interval: str, timestamp: int, o, h, l, c, v) -> dict:  # noqa: E741
    """Publish market_data for a candle that bulk_store has stored (validated by the bus, not stored twice)."""
    from ground import bus

    with prestored(symbol, interval, timestamp):
        return bus.publish(market_data_event(symbol, interval, timestamp, o, h, l, c, v))


def publish_stored_batch(events: list[dict]) -> list[dict]:
    """Publish market_data events whose candles bulk_store has stored, as one batch (see bus.publish_batch)."""
    from ground import bus

    return bus.publish_batch(events, stored=True)


_COLUMNS = ("symbol", "interval", "timestamp", "open", "high", "low", "close", "volume", "created_at")
_BATCH_ROWS = 500  # 9 parameters a row: well under SQLite's and PostgreSQL's limits


def bulk_store(rows: Sequence[tuple]) -> set[CandleKey]:
    """Insert candles ``(symbol, interval, timestamp, open, high, low, close, volume)``, skipping those already
    there (unique symbol + interval + timestamp); return the keys of the rows that were actually inserted.

    One ``INSERT … ON CONFLICT DO NOTHING RETURNING`` per batch (PostgreSQL and SQLite ≥ 3.35), so even a
    concurrent writer of the same candles cannot make a row count as new twice.
    """
    inserted: set[CandleKey] = set()
    if not rows:
        return inserted
    if connection.vendor == "postgresql":
        return _bulk_store_copy(rows)
    table = connection.ops.quote_name(Candle._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in _COLUMNS)
    conflict = ", ".join(connection.ops.quote_name(c) for c in ("symbol", "interval", "timestamp"))
    returning = ", ".join(connection.ops.quote_name(c) for c in ("symbol", "interval", "timestamp"))
    created = connection.ops.adapt_datetimefield_value(timezone.now())
    placeholder = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(rows), _BATCH_ROWS):
            batch = rows[start : start + _BATCH_ROWS]
            params: list = []
            for row in batch:
                params.extend(row)
                params.append(created)
            sql = (
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholder] * len(batch))} "
                f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}"
            )
            cursor.execute(sql, params)
            inserted.update((symbol, interval, int(ts)) for symbol, interval, ts in cursor.fetchall())
    return inserted


def _bulk_store_copy(rows: Sequence[tuple]) -> set[CandleKey]:
    """PostgreSQL: COPY the rows into a session temp table, then one INSERT … SELECT … ON CONFLICT DO NOTHING
    RETURNING — several times faster than a parameterised INSERT for thousands of rows."""
    import io

    table = connection.ops.quote_name(Candle._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in _COLUMNS)
    key = ", ".join(connection.ops.quote_name(c) for c in ("symbol", "interval", "timestamp"))
    values = ", ".join(connection.ops.quote_name(c) for c in _COLUMNS[:-1])
    buffer = io.StringIO()
    for symbol, interval, ts, o, h, lo, c, v in rows:
        buffer.write(f"{symbol},{interval},{int(ts)},{o},{h},{lo},{c},{v}\n")
    buffer.seek(0)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            'CREATE TEMP TABLE IF NOT EXISTS cdb_candle_in ("symbol" varchar(41), "interval" varchar(8), '
            '"timestamp" bigint, "open" numeric, "high" numeric, "low" numeric, "close" numeric, "volume" numeric) '
            "ON COMMIT DELETE ROWS"
        )
        cursor.copy_expert(f"COPY cdb_candle_in ({values}) FROM STDIN (FORMAT csv)", buffer)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT DISTINCT ON ({key}) {values}, now() FROM cdb_candle_in "
            f"ORDER BY {key} ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
        )
        inserted = {(symbol, interval, int(ts)) for symbol, interval, ts in cursor.fetchall()}
        cursor.execute("TRUNCATE cdb_candle_in")
    return inserted


def store_candles(symbol: str, interval: str, candles: Iterable) -> set[int]:
    """bulk_store for one symbol; ``candles`` have timestamp/open/high/low/close/volume. Returns new timestamps."""
    rows = [
        (symbol, interval, int(c.timestamp), *(_decimal(x) for x in (c.open, c.high, c.low, c.close, c.volume)))
        for c in candles
    ]
    return {ts for _, _, ts in bulk_store(rows)}
