"""The live signal path: the strategy's decision on the event's candle, the same whatever order tasks run in.

Several workers take market_data tasks in any order, so a task never uses "the latest
state" or "the latest candle". It computes what the backtest computes: the strategy
fed every stored candle of the symbol and interval, in timestamp order, up to and
including the event's candle — and takes the output for that candle.

Why not a short window? EMA and Wilder averages remember their whole past; a window of
a few warm-ups changes the values in the last digits, which can flip a crossing decided
by a hair and would break parity with the backtest. So the reference is always the
full stored history, and a cache makes that cheap:

* After computing candle T, the strategy object (its indicator state) is stored under
  *strategy key (name, version, parameters) + symbol + interval + T* with a fingerprint
  of the history it has consumed: the series' revision (``marketdata.CandleSeries``),
  T, and a digest of the values of the last ``TAIL`` candles.
* A task for candle T reads the last ``TAIL`` + 1 stored candles up to T together with
  the series' revision, in one statement (one snapshot), and uses the cached state of
  the candle before T if its fingerprint matches; if not, it reads the last
  ``LOOKBACK`` + 1, looks up cached states for those timestamps, newest first, takes
  the first whose fingerprint matches, and replays the few candles after it up to T.
  The revision goes up whenever a candle is stored at or before the newest one, or any
  candle is updated or deleted (database triggers, whoever writes), so an equal
  revision means the same candles up to T; a late older candle, or a table emptied and
  refilled, makes it not line up. (Cost: one indexed query of ``TAIL`` rows, two of at
  most ``LOOKBACK`` rows, however long the history.)
* With no usable state — or when the whole history fits in those rows anyway — it
  rebuilds from the first stored candle (keyset pages of ``PAGE`` rows). That is exact
  and deterministic, only slower.

Either way the result is bit-identical to the in-process run, so the signal for a
candle does not depend on task order or on which worker ran it. The cache is Django's
cache framework (``state_store``): a Redis database of its own, shared by all workers,
when Redis is configured (``STRATEGY_CACHE_URL``), otherwise local memory in the process.
Cached states are pickles signed with an HMAC of ``SECRET_KEY``, stored as bytes (the
cache unpickles nothing); an unsigned, foreign or unreadable entry is ignored. The signal
id is deterministic (symbol, interval, strategy, candle time) and unique in the table,
so a candle handled twice — redelivery or two workers at once — is stored and published
once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, Subquery

from ground import bus
from ground.amounts import plain
from ground.prepared import Prepared
from ground.redis_client import redis_client
from marketdata.ingest import CandleKey
from marketdata.models import Candle, CandleSeries

from .models import Signal
from .signal_ids import signal_id_for
from .strategies import Candle as StrategyCandle
from .strategies import Signal as Emitted
from .strategies import Strategy, strategy_from_spec

if TYPE_CHECKING:
    from risk.account_view import KnownRows

logger = logging.getLogger("cdb.signals")

LOOKBACK = 64  # earlier candles whose cached state a task may start from
TAIL = 8  # candles whose values a cached state's fingerprint digests
PAGE = 5000  # rows per query when rebuilding from the first candle
STATE_TTL = 6 * 3600  # seconds a cached strategy state is kept (only the recent ones are ever read)
_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")


def _candle(row) -> StrategyCandle:
    ts, o, h, lo, c, v = row[:6]
    return StrategyCandle(ts, float(o), float(h), float(lo), float(c), float(v))


def history(symbol: str, interval: str, timestamp: int, count: int | None = None) -> list[StrategyCandle]:
    """Stored candles up to ``timestamp`` in time order: the last ``count``, or all of them."""
    rows = Candle.objects.filter(symbol=symbol, interval=interval, timestamp__lte=timestamp)
    if count is not None:
        return [_candle(row) for row in reversed(rows.order_by("-timestamp").values_list(*_FIELDS)[:count])]
    candles: list[StrategyCandle] = []
    for page in _pages(symbol, interval, timestamp):
        candles.extend(page)
    return candles


def _pages(symbol: str, interval: str, timestamp: int):
    """All stored candles up to ``timestamp``, oldest first, in keyset pages of PAGE rows."""
    after = None
    while True:
        rows = Candle.objects.filter(symbol=symbol, interval=interval, timestamp__lte=timestamp)
        if after is not None:
            rows = rows.filter(timestamp__gt=after)
        page = [_candle(row) for row in rows.order_by("timestamp").values_list(*_FIELDS)[:PAGE]]
        if not page:
            return
        yield page
        after = page[-1].timestamp
        if len(page) < PAGE:
            return


# --- cached strategy state ---------------------------------------------------------------------------------


STATE_CACHE = "strategy_state"  # its alias in settings.CACHES


def state_store() -> BaseCache:
    """The strategy-state cache (Django's cache framework, ``settings.CACHES["strategy_state"]``): with Redis a
    database of its own (``STRATEGY_CACHE_URL``) shared by every worker, storing the signed bytes as they are;
    embedded, local memory in this process."""
    return caches[STATE_CACHE]


KEY_PREFIX = "cdb:sigstate:"


def state_key(strategy: Strategy, symbol: str, interval: str, timestamp: int) -> str:
    return f"{state_key_prefix(strategy, symbol, interval)}{timestamp}"


def state_key_prefix(strategy: Strategy, symbol: str, interval: str) -> str:
    digest = hashlib.sha256(strategy.key.encode()).hexdigest()[:16]
    return f"{KEY_PREFIX}{strategy.name}:{digest}:{symbol}:{interval}:"


def clear_state_cache() -> None:
    """Forget every cached strategy state (tests; after changing how candles are stored): only those keys, never the
    rest of the cache's Redis database (``clear`` would empty it all, whatever else shares it)."""
    store = state_store()
    if not settings.STRATEGY_CACHE_URL:  # local memory: this cache's own
        store.clear()
        return
    client = redis_client(url=settings.STRATEGY_CACHE_URL)
    for key in client.scan_iter(f"{store.make_key(KEY_PREFIX)}*", count=1000):
        client.delete(key)


def _sign(payload: bytes) -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), payload, hashlib.sha256).digest()


def _dump(fingerprint: tuple, strategy: Strategy) -> bytes:
    payload = pickle.dumps((fingerprint, strategy), protocol=pickle.HIGHEST_PROTOCOL)
    return _sign(payload) + payload


def _load(blob: bytes, strategy_key: str) -> tuple[tuple, Strategy] | None:
    signature, payload = blob[:32], blob[32:]
    if len(blob) <= 32 or not hmac.compare_digest(signature, _sign(payload)):
        return None
    try:
        fingerprint, strategy = pickle.loads(payload)
    except Exception:  # written by another version of the code: a miss
        return None
    if not isinstance(strategy, Strategy) or strategy.key != strategy_key:
        return None
    return fingerprint, strategy


def _save(strategy: Strategy, symbol: str, interval: str, timestamp: int, fingerprint: tuple) -> None:
    try:
        state_store().set(state_key(strategy, symbol, interval, timestamp), _dump(fingerprint, strategy), STATE_TTL)
    except Exception:  # the cache is an optimisation: losing it costs a rebuild, never a wrong signal
        logger.warning("could not cache the strategy state for %s %s @%s", symbol, interval, timestamp, exc_info=True)


def _cached(template: Strategy, symbol: str, interval: str, candles: list[StrategyCandle], fingerprint, below: int):
    """(position, strategy) of the newest usable cached state among ``candles[:below]``, or None.

    Only positions with ``TAIL`` candles in hand can be checked (their digest needs them).
    """
    positions = list(range(below - 1, TAIL - 2, -1))
    prefix = state_key_prefix(template, symbol, interval)
    # The newest is almost always there (the previous candle's task stored it): ask for it alone first, and for
    # the older ones (each a pickled strategy) only when it is not usable.
    for chunk in (positions[:1], positions[1:]):
        if not chunk:
            continue
        keys = [f"{prefix}{candles[j].timestamp}" for j in chunk]
        try:
            found = state_store().get_many(keys)
        except Exception:
            logger.warning("strategy state cache unavailable; rebuilding from history", exc_info=True)
            return None
        for j, key in zip(chunk, keys, strict=True):
            blob = found.get(key)
            if blob is None:
                continue
            loaded = _load(blob, template.key)
            if loaded is not None and loaded[0] == fingerprint(j):
                return j, loaded[1]
    return None


def _tail_digest(candles: list[StrategyCandle]) -> bytes:
    values = repr([(c.timestamp, c.open, c.high, c.low, c.close, c.volume) for c in candles])
    return hashlib.blake2b(values.encode(), digest_size=16).digest()


def evaluate(spec: str, symbol: str, interval: str, timestamp: int):
    """The strategy's output on the stored candle at ``timestamp`` given all stored candles before it.

    Returns ``(strategy, emitted, path)``: ``strategy`` holds the state after that candle
    (None when no candle is stored at ``timestamp``), ``emitted`` is a strategies.Signal or
    None, and ``path`` says how the state was obtained: "cache+N" (a cached state, then N
    candles replayed) or "rebuild+N" (N candles from the first one).
    """
    strategy, emitted, path = evaluate_many(spec, symbol, interval, [timestamp])
    return strategy, emitted.get(timestamp), path


def evaluate_many(spec: str, symbol: str, interval: str, timestamps: list[int]):
    """``evaluate`` for several candles of one symbol at once: one pass of the strategy over them, in time order.

    Returns ``(strategy, {timestamp: emitted or None}, path)`` with the state after the last candle; a
    timestamp with no stored candle is left out of the dict (``strategy`` is None if that is every one).
    """
    targets = sorted(set(timestamps))
    # Almost always the state after the candle before the first target is cached (that candle's task stored it):
    # read first only the TAIL candles that check it, and the LOOKBACK among which an older state may be found
    # only when it is not usable.
    return _evaluate_window(spec, symbol, interval, targets, TAIL, final=False) or _evaluate_window(
        spec, symbol, interval, targets, LOOKBACK, final=True
    )


def _evaluate_window(spec: str, symbol: str, interval: str, targets: list[int], lookback: int, *, final: bool):
    """``evaluate_many`` from the ``lookback`` stored candles before the first target; not ``final``: None
    instead of a rebuild from the first candle when no cached state among them is usable."""
    template = strategy_from_spec(spec).for_series(symbol, interval)
    last = targets[-1]
    wanted_rows = lookback + len(targets)
    rows, revision = _recent_rows(symbol, interval, last, wanted_rows + 1)  # one more: is that all there is?
    whole_history = len(rows) <= wanted_rows
    rows = rows[:wanted_rows]
    position_of = {row[0]: len(rows) - 1 - i for i, row in enumerate(rows)}
    if len(targets) > 1 and not all(ts in position_of for ts in targets):
        return _one_by_one(spec, symbol, interval, targets)  # gaps or missing candles: take each on its own
    if not rows or rows[0][0] != last:
        return None, {}, "missing"
    candles = [_candle(row) for row in reversed(rows)]  # oldest first; candles[-1] is the last target

    def fingerprint(j: int) -> tuple:
        return (revision, candles[j].timestamp, _tail_digest(candles[max(0, j - TAIL + 1) : j + 1]))

    wanted = set(targets)
    emitted: dict[int, Emitted | None] = {}

    def feed(strategy: Strategy, candles_in_order) -> None:
        on_candle = strategy.on_candle
        for candle in candles_in_order:
            out = on_candle(candle)
            if candle.timestamp in wanted:
                emitted[candle.timestamp] = out

    # No series row (candles written with the triggers off): a cached state cannot be checked, so none is used.
    cacheable = revision is not None
    hit = None
    if cacheable and not whole_history:
        hit = _cached(template, symbol, interval, candles, fingerprint, below=position_of[targets[0]])
    if hit is not None:
        position, strategy = hit
        feed(strategy, candles[position + 1 :])
        path = f"cache+{len(candles) - 1 - position}"
    elif whole_history:
        strategy = template
        feed(strategy, candles)
        path = f"rebuild+{len(candles)}"
    elif not final:
        return None
    else:
        strategy, fed, seen = template, 0, None
        for page in _pages(symbol, interval, last):
            feed(strategy, page)
            fed += len(page)
            seen = page[-1].timestamp
        if seen != last:  # cannot happen: the candle was there a moment ago and candles are never deleted
            return None, {}, "missing"
        path = f"rebuild+{fed}"
        if _revision(symbol, interval) != revision:  # the past changed while paging: right for what was read only
            return strategy, emitted, path
    if cacheable:
        _save(strategy, symbol, interval, last, fingerprint(len(candles) - 1))
    return strategy, emitted, path


# (symbol, interval) → (timestamp, created_at) of the candle this process's signal path read last: a signal on it,
# which follows at once, takes its latency from here instead of reading the candle again.
_candles_read: dict[tuple[str, str], tuple[int, datetime]] = {}


def _recent_rows(symbol: str, interval: str, last: int, limit: int) -> tuple[list[tuple], int | None]:
    """The newest ``limit`` candles up to ``last`` (newest first) and the series' revision, in one statement: one
    snapshot, so the rows are the history of that revision."""
    read = _recent.get(limit)
    if read is None:
        read = _recent[limit] = Prepared(partial(_recent_query, limit=limit), str, str, int)
    rows = read(symbol, interval, last)
    if not rows:
        return [], None
    _candles_read[(symbol, interval)] = (rows[0][0], rows[0][-2])  # for signal_latency_seconds, if it signals
    return [row[:-2] for row in rows], rows[0][-1]


def _recent_query(symbol: str, interval: str, last: int, *, limit: int) -> QuerySet:
    revision = CandleSeries.objects.filter(symbol=symbol, interval=interval).values("revision")
    return (
        Candle.objects.filter(symbol=symbol, interval=interval, timestamp__lte=last)
        .annotate(series_revision=Subquery(revision))
        .order_by("-timestamp")
        .values_list(*_FIELDS, "created_at", "series_revision")[:limit]
    )


_recent: dict[int, Prepared] = {}  # by limit (the LIMIT is part of the SQL)


def candle_stored_at(symbol: str, interval: str, timestamp: int) -> datetime | None:
    """When the candle a signal was made on was stored (``signal_latency_seconds`` in ops), None if it is gone."""
    noted = _candles_read.get((symbol, interval))
    if noted is not None and noted[0] == timestamp:
        return noted[1]
    found = Candle.objects.filter(symbol=symbol, interval=interval, timestamp=timestamp)
    return found.values_list("created_at", flat=True).first()


def _revision(symbol: str, interval: str) -> int | None:
    return CandleSeries.objects.filter(symbol=symbol, interval=interval).values_list("revision", flat=True).first()


def _one_by_one(spec: str, symbol: str, interval: str, targets: list[int]):
    strategy, emitted, paths = None, {}, []
    for ts in targets:
        state, out, path = evaluate_many(spec, symbol, interval, [ts])
        if state is not None:
            strategy, emitted[ts] = state, out
        paths.append(path)
    return strategy, emitted, "each:" + ",".join(paths)


def signal_event(signal_id: str, strategy: str, symbol: str, interval: str, timestamp: int, emitted: Emitted) -> dict:
    """The ``signal`` event for what a strategy emitted on a candle: its price and confidence as exact decimal
    strings of the floats it computed (``plain``: ``float(text)`` gives the very float back)."""
    return {
        "type": "signal",
        "signal_id": signal_id,
        "strategy": strategy,
        "symbol": symbol,
        "interval": interval,
        "side": emitted.side,
        "confidence": plain(emitted.confidence),
        "reason": emitted.reason,
        "price": plain(emitted.price),
        "timestamp": timestamp,
    }


def process_market_data(event: dict, known: KnownRows | None = None) -> Signal | None:
    """Run the configured strategy on the event's candle; store and publish a signal if it emits one (``known``:
    see ``store_signal``)."""
    symbol, interval, timestamp = candle_key(event)
    strategy, emitted, path = evaluate(settings.STRATEGY, symbol, interval, timestamp)
    if strategy is None:
        logger.warning("no stored candle for %s %s @%s; nothing to compute", symbol, interval, timestamp)
        return None
    logger.debug("%s %s @%s evaluated by %s (%s)", symbol, interval, timestamp, strategy.name, path)
    if emitted is None:
        return None
    return store_signal(strategy.name, symbol, interval, timestamp, emitted, known)


def candle_key(event: dict) -> CandleKey:
    """(symbol, interval, timestamp) of a market_data event; no interval means the configured one."""
    return event["symbol"], event.get("interval") or settings.INTERVAL, event["timestamp"]


def evaluate_events(events: list[dict]) -> dict[CandleKey, tuple[str, Emitted | None]]:
    """The strategy's output for each market_data event of a batch: one ``evaluate_many`` per symbol and interval.

    Keyed by (symbol, interval, timestamp) → (strategy name, emitted or None); a candle that is not stored is
    left out (and logged).
    """
    wanted: dict[tuple[str, str], list[int]] = {}
    for event in events:
        symbol, interval, timestamp = candle_key(event)
        wanted.setdefault((symbol, interval), []).append(timestamp)
    outputs: dict[CandleKey, tuple[str, Emitted | None]] = {}
    for (symbol, interval), stamps in wanted.items():
        strategy, emitted, path = evaluate_many(settings.STRATEGY, symbol, interval, stamps)
        logger.debug(
            "%s %s: %d candle(s) evaluated (%s)", symbol, interval, len(stamps), path, extra={"symbol": symbol}
        )
        for ts in stamps:
            if ts in emitted:
                outputs[(symbol, interval, ts)] = (strategy.name, emitted[ts])
            else:
                logger.warning("no stored candle for %s %s @%s; nothing to compute", symbol, interval, ts)
    return outputs


def store_signal(
    strategy: str, symbol: str, interval: str, timestamp: int, emitted: Emitted, known: KnownRows | None = None
) -> Signal | None:
    """Store, decide and publish what the strategy emitted on a candle, once (the signal id is unique). Returns the
    signal (its database id is not read back), or None if it was stored before. ``known``: the account rows the
    market watch of the candle read (``risk.decision_service.MarketWatch.known``), which the decision uses if they
    are still the account's.

    The signal is stored and decided in one transaction, under the account lock that serializes every decision
    (``risk.decision_service.decide_locked``): a crash leaves all of it or
    none of it. A signal stored before (a redelivered candle) fails the insert on its unique id, and the whole
    transaction with it."""
    from risk.decision_service import decide_locked
    from risk.models import TradingState

    signal_id = signal_id_for(symbol, interval, strategy, timestamp)
    published = signal_event(signal_id, strategy, symbol, interval, timestamp, emitted)
    try:
        with transaction.atomic():
            state, parameters = TradingState.load_with_parameters(for_update=True)
            signal = Signal(
                signal_id=signal_id,
                symbol=symbol,
                interval=interval,
                side=emitted.side,
                confidence=Decimal(str(emitted.confidence)),
                reason=emitted.reason,
                strategy=strategy,
                price=Decimal(str(emitted.price)),
                timestamp=timestamp,
                components=emitted.components,
                status=Signal.Status.DECIDED,
            )
            signal.save(force_insert=True)  # a duplicate signal id raises IntegrityError
            bus.publish(published, consumed=True)
            decide_locked(state, published, parameters, known)
            return signal
    except IntegrityError:
        if not Signal.objects.filter(signal_id=signal_id).exists():
            raise  # not the signal's unique id: a real error
    if _unfinished(signal_id):
        # Decided, with its order still PENDING (a live order committed before it is sent, whose process died
        # before the send), or stored NEW by a version that decided in a transaction of its own. Enqueue its
        # decision again (not PUBLISHed twice): deciding is idempotent and re-drives a PENDING order.
        logger.info("signal %s stored but unfinished; its decision enqueued again", signal_id)
        bus.redeliver(published)
    else:
        logger.info("signal %s already stored and decided; not publishing it twice", signal_id)
    return None


def mark_decided(signal_id: str) -> bool:
    """Mark the stored signal ``signal_id`` DECIDED if it is still NEW; True if it was (it has never been decided).
    Risk's ``decide_signal`` calls it in the decision's transaction, under the account lock."""
    undecided = Signal.objects.filter(signal_id=signal_id, status=Signal.Status.NEW)
    return bool(undecided.update(status=Signal.Status.DECIDED))


def _unfinished(signal_id: str) -> bool:
    from execution.models import Order

    return (
        Signal.objects.filter(signal_id=signal_id, status=Signal.Status.NEW).exists()
        or Order.objects.filter(signal_id=signal_id, status=Order.Status.PENDING).exists()
    )
