"""CSV replay: recorded candles validated row by row, stored in bulk (each once), then published in time order.

Files are read as streams and merged by the time each candle is known, its close (open time + interval), so several
symbols interleave as they did live and a 5m candle comes after the 1m candles that closed before it. Each
chunk is stored with one ``INSERT … ON CONFLICT DO NOTHING RETURNING``; only the candles that were new are
published as market_data (a second replay of the same file stores and publishes nothing). While
publishing, the market clock follows the candles' time and the data-stale watch sees that time; each symbol's
freshness mark (``marketdata.stale.touch``, as a live feed keeps it) is its newest published candle's close, so the
page's data age is the one the risk check reads (a 5m market whose clock is its last close is not 5 min old).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ground.amounts import mixed_quotes

from .. import clock as market_clock
from ..ingest import bulk_store, market_data_event, publish_stored, publish_stored_batch
from ..stale import touch
from ..validation import CandleRow, Rejection, exchange_interval, interval_ms, parse_file_name, validate_lines

logger = logging.getLogger("cdb.feed.replay")

CHUNK_ROWS = 2000
REPLAY_NOTE = "replay: the time of the recorded candles being replayed"


class ReplayError(ValueError):
    """Bad input for a replay (missing or empty file, unknown symbol or interval); the message says which."""


@dataclass(frozen=True)
class ReplaySource:
    path: Path
    symbol: str
    interval: str


@dataclass
class ReplaySummary:
    rows_read: int = 0
    stored: int = 0
    already_present: int = 0
    published: int = 0
    rejected: Counter = field(default_factory=Counter)
    first_timestamp: int | None = None
    last_timestamp: int | None = None

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def lines(self) -> list[str]:
        out = [
            f"rows read:       {self.rows_read}",
            f"candles stored:  {self.stored}",
            f"already present: {self.already_present}",
            f"published:       {self.published}",
            f"rejected:        {self.rejected_total}",
        ]
        out += [f"  {reason}: {count}" for reason, count in sorted(self.rejected.items())]
        return out


def _has_data(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or (number == 1 and text.lower().startswith("timestamp")):
                continue
            return True
    return False


def resolve_sources(paths: list[str], symbols: list[str] | None, interval: str | None) -> list[ReplaySource]:
    """Check the files and name each one's symbol and interval (from SYMBOL-INTERVAL.csv unless given)."""
    if not paths:
        raise ReplayError("replay needs --data FILE [FILE …]")
    if symbols and len(symbols) not in (1, len(paths)):
        raise ReplayError(f"--symbols names {len(symbols)} symbols for {len(paths)} files; give one per file")
    sources = []
    for index, raw in enumerate(paths):
        path = Path(raw)
        if not path.is_file():
            raise ReplayError(f"{raw}: no such file")
        if not _has_data(path):
            raise ReplayError(f"{raw}: the file is empty (no candle rows)")
        from_name = parse_file_name(path)
        symbol = symbols[index if len(symbols) > 1 else 0] if symbols else (from_name[0] if from_name else None)
        file_interval = interval or (from_name[1] if from_name else None)
        if symbol is None or file_interval is None:
            raise ReplayError(
                f"{raw}: name is not SYMBOL-INTERVAL.csv (e.g. ETH_BTC-5m.csv); give --symbols/--interval"
            )
        try:
            exchange_interval(file_interval)
        except ValueError as error:
            raise ReplayError(f"{raw}: {error}") from None
        sources.append(ReplaySource(path, symbol, file_interval))
    keys = [(s.symbol, s.interval) for s in sources]
    if len(set(keys)) != len(keys):
        raise ReplayError("two files replay the same symbol and interval; replay them one after the other")
    mixed = mixed_quotes(s.symbol for s in sources)
    if mixed:
        raise ReplayError(f"refused: {mixed}. Replay each quote currency into a database of its own")
    return sources


def count_lines(sources: list[ReplaySource]) -> int:
    total = 0
    for source in sources:
        with source.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip() and not (number == 1 and line.lstrip().lower().startswith(b"timestamp")):
                    total += 1
    return total


def file_span(source: ReplaySource) -> tuple[int, int] | None:
    """The open times of the file's first and last valid candles (None: it has none)."""
    first = last = None
    with source.path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for item in validate_lines(handle, source.interval):
            if isinstance(item, CandleRow):
                first = item.timestamp if first is None else first
                last = item.timestamp
    return None if first is None else (first, last)


def _read(
    source: ReplaySource,
    summary: ReplaySummary,
    tick: Callable[[int], None],
    ended: Callable[[ReplaySource, int | None], None],
) -> Iterator[tuple]:
    """The file's valid candles as (known at, symbol, interval, row); at its end, ``ended(source, the time its last
    candle is known)`` — before the merge yields any later candle of another file (it reads each file one candle
    ahead)."""
    last = None
    length = interval_ms(source.interval)
    with source.path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for item in validate_lines(handle, source.interval):
            summary.rows_read += 1
            tick(1)
            if isinstance(item, Rejection):
                summary.rejected[item.reason] += 1
                logger.debug("%s line %d rejected (%s): %r", source.path, item.line_number, item.reason, item.line)
                continue
            last = item.timestamp + length
            yield last, source.symbol, source.interval, item
    ended(source, last)


def default_batch_size() -> int:
    """``MARKET_DATA_BATCH_SIZE`` when Celery workers take the tasks, else 1 (tasks run in this process)."""
    from celery import current_app as app
    from django.conf import settings

    return 1 if app.conf.task_always_eager else max(1, settings.MARKET_DATA_BATCH_SIZE)


def _chunks(merged: Iterator[tuple], size: int, by_timestamp: bool) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for item in merged:
        # Never split one time across chunks: a candle published at time T must find every candle known at T
        # stored, as the backtest sees them (a decision at T values all symbols at T).
        at_boundary = item[0] != chunk[-1][0] if chunk else False
        if chunk and at_boundary and (len(chunk) >= size or by_timestamp):
            yield chunk
            chunk = []
        chunk.append(item)
    if chunk:
        yield chunk


class Replay:
    """One replay run. ``speed``: None = as fast as possible, else a multiplier of real time."""

    def __init__(
        self,
        sources: list[ReplaySource],
        *,
        speed: float | None = None,
        publish: bool = True,
        stale_watch=None,
        tick: Callable[[int], None] = lambda n: None,
        sleep: Callable[[float], None] = time.sleep,
        chunk_rows: int = CHUNK_ROWS,
        after_event: Callable[[], None] | None = None,
        batch_size: int | None = None,
        before_time: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> None:
        self.sources = sources
        self.speed = speed
        self.publish = publish
        self.stale_watch = stale_watch
        self.tick = tick
        self.sleep = sleep
        self.chunk_rows = chunk_rows
        self.after_event = after_event  # lockstep: e.g. wait until the pipeline has finished with the candle
        # Before the first candle of each time, once the previous time's are all out (and checked by the data-stale
        # watch), with that time: e.g. an operator's commands given before it (run_feed --operator-commands).
        self.before_time = before_time
        # With the market time of the first candle published, before it: e.g. a fresh database's trading state moved
        # back to it from the wall time it was created at (``risk.state.no_state_from_the_future``), one clock.
        self.on_start = on_start
        self.clock = market_clock.EventClock()
        self.summary = ReplaySummary()
        self._last_published_ts: int | None = None
        # Workers get candles in batches (one task each, see bus.publish_batch). One at a time in lockstep, and
        # when tasks run in this process (embedded): there they run at each candle's own time on the clock.
        self.batch_size = batch_size if batch_size is not None else default_batch_size()
        if after_event is not None:
            self.batch_size = 1
        self._batch: list[dict] = []

    def run(self) -> ReplaySummary:
        streams = [_read(source, self.summary, self.tick, self._source_ended) for source in self.sources]
        if self.stale_watch is not None:
            for source in self.sources:
                self.stale_watch.expect_candles(source.symbol, interval_ms(source.interval))
        merged = heapq.merge(*streams, key=lambda item: (item[0], item[1], item[2]))
        for chunk in _chunks(merged, self.chunk_rows, by_timestamp=self.speed is not None):
            self._store_and_publish(chunk)
        if self.publish and self.stale_watch is not None and self._last_published_ts is not None:
            self.stale_watch.check_at(self.clock.now_ms())
            # as the backtest ends: no order still waiting will get a price from these files
            self.stale_watch.data_ended(self.clock.now_ms(), sorted({s.symbol for s in self.sources}))
        return self.summary

    def _source_ended(self, source: ReplaySource, last_ms: int | None) -> None:
        if self.stale_watch is not None:
            self.stale_watch.candles_end(source.symbol, last_ms if last_ms is not None else -1)

    def _store_and_publish(self, chunk: list[tuple]) -> None:
        rows = [(s, i, c.timestamp, c.open, c.high, c.low, c.close, c.volume) for _, s, i, c in chunk]
        new = bulk_store(rows)
        self.summary.stored += len(new)
        self.summary.already_present += len(chunk) - len(new)
        if self.summary.first_timestamp is None:
            self.summary.first_timestamp = chunk[0][3].timestamp
        self.summary.last_timestamp = chunk[-1][3].timestamp
        if not self.publish or not new:
            return
        if self._last_published_ts is None:  # the market runs on the replay's time from its first candle on
            market_clock.set_shared_event_time(chunk[0][0])
            if self.on_start is not None:
                self.on_start(chunk[0][0])
        arrivals: dict[int, list[tuple[str, int]]] = {}  # each time's new candles, (symbol, known at)
        if self.stale_watch is not None:
            for known, symbol, interval, candle in chunk:
                if (symbol, interval, candle.timestamp) in new:
                    arrivals.setdefault(known, []).append((symbol, known))
        seen: dict[str, int] = {}  # each symbol's newest close in this chunk: its freshness mark, as a live feed's
        with market_clock.use_clock(self.clock):
            for known, symbol, interval, candle in chunk:
                if (symbol, interval, candle.timestamp) not in new:
                    continue
                self._before_event(known, arrivals.get(known, ()))
                self._publish(symbol, interval, known, candle)
                seen[symbol] = known
            self._flush()
        for symbol, known in seen.items():
            touch(symbol, known)
        market_clock.set_shared_event_time(self.clock.now_ms(), note=REPLAY_NOTE)

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            publish_stored_batch(batch)

    def _before_event(self, ts: int, arrivals=()) -> None:
        """Before a candle known at ``ts``; ``arrivals``: every new candle of that time, (symbol, known at)."""
        previous = self._last_published_ts
        if previous is not None and ts != previous and self.speed:
            self._flush()  # paced: a timestamp's candles go out when their time comes, before the wait
        if previous is not None and ts != previous:
            if self.stale_watch is not None:
                self.stale_watch.check_at(previous)  # the whole timestamp group is in: is anyone missing?
                # between the two times, where the beat would have found data stale (a gap in every file)
                for onset in self.stale_watch.onsets(previous, ts):
                    if self.before_time is not None:
                        self._flush()
                        self.before_time(onset)  # the commands given before it
                    self.stale_watch.check_at(onset)
            if self.speed:
                self.sleep((ts - previous) / 1000 / self.speed)
        if previous is None or ts != previous:
            if self.before_time is not None:
                self._flush()  # the earlier times' candles go out first
                self.before_time(ts)
            self.clock.observe(ts)
            if self.speed is not None:
                market_clock.set_shared_event_time(ts, note=REPLAY_NOTE)
            if self.stale_watch is not None and arrivals and self.stale_watch.holds_pause():
                self._flush()  # the earlier times' candles are decided under the pause
                self.stale_watch.fresh_data(ts, arrivals)  # it ends on fresh data, before decisions on it
        self._last_published_ts = ts

    def _publish(self, symbol: str, interval: str, known: int, candle: CandleRow) -> None:
        values = (symbol, interval, candle.timestamp, candle.open, candle.high, candle.low, candle.close, candle.volume)
        if self.batch_size > 1:
            self._batch.append(market_data_event(*values))
            if len(self._batch) >= self.batch_size:
                self._flush()
        else:
            publish_stored(*values)
        self.summary.published += 1
        if self.after_event is not None:
            self.after_event()
        if self.stale_watch is not None:
            self.stale_watch.seen(symbol, known)
