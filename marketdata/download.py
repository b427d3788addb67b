"""Downloading recorded candles from MEXC into SYMBOL-INTERVAL.csv files (the replay format).

Pages through ccxt ``fetch_ohlcv`` in fixed windows of ``PAGE_LIMIT`` candles (so quiet stretches cannot stall
it), lets ccxt's rate limiter space the requests (``enableRateLimit``) and backs off on network errors. A file
that already has rows is resumed after its last timestamp; every page is appended and flushed as it arrives,
so an interrupted download loses nothing. Only closed candles are written (open time + interval ≤ until).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from .feeds.mexc import PAGE_LIMIT, backoff_delay, to_ccxt
from .validation import HEADER, check_row, interval_ms

logger = logging.getLogger("cdb.download")


class DownloadError(ValueError):
    pass


def parse_time(value: str) -> int:
    """``2024-01-01``, ``2024-01-01T12:30``, ``2024-01-01T12:30:00+00:00`` (UTC unless stated) or epoch ms."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DownloadError(f"{value!r} is not a date (YYYY-MM-DD[THH:MM[:SS]]) or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def last_timestamp(path: Path) -> int | None:
    """The last candle's timestamp in an existing file, None if it has no rows; DownloadError if the end is bad."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        lines = [line.strip() for line in handle.read().decode("utf-8", errors="replace").splitlines() if line.strip()]
    if not lines or lines[-1].lower().startswith("timestamp"):
        return None
    row = check_row(lines[-1].split(","))
    if isinstance(row, str):
        raise DownloadError(f"{path}: the last line is not a candle ({row}); repair or remove the file")
    return row.timestamp


def _number(value) -> str:
    return format(Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value)), "f")


@dataclass
class DownloadResult:
    symbol: str
    path: Path
    written: int
    resumed_from: int | None
    requests: int


def download(
    exchange,
    symbol: str,
    interval: str,
    since_ms: int,
    until_ms: int,
    out_dir: Path,
    *,
    progress: Callable[[int], None] = lambda n: None,
    retries: int = 6,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    step = interval_ms(interval)
    market = to_ccxt(symbol)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{symbol}-{interval}.csv"
    last = resumed = last_timestamp(path)
    start = since_ms + (-since_ms) % step  # the first candle opening at or after since
    if last is not None:
        start = max(start, last + step)
    if start > since_ms:
        progress(min((start - since_ms) // step, max(0, (until_ms - since_ms) // step)))
    end = until_ms  # exclusive; a candle is written when it has closed by then
    written = requests = 0
    new_file = not path.exists() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8", newline="") as handle:
        if new_file:
            handle.write(",".join(HEADER) + "\n")
        cursor = start
        while cursor + step <= end:
            window_end = min(end, cursor + PAGE_LIMIT * step)
            page = _fetch(exchange, market, interval, cursor, window_end, retries, sleep)
            requests += 1
            rows = []
            for candle in page:
                ts = int(candle[0])
                if cursor <= ts < window_end and ts + step <= end and (last is None or ts > last):
                    rows.append(",".join([str(ts), *(_number(x) for x in candle[1:6])]))
                    last = ts
            if rows:
                handle.write("\n".join(rows) + "\n")
                handle.flush()
                written += len(rows)
            progress((window_end - cursor) // step)
            cursor = window_end
    return DownloadResult(symbol, path, written, resumed, requests)


def _fetch(exchange, market: str, interval: str, since: int, until: int, retries: int, sleep) -> list:
    import ccxt

    for attempt in range(retries + 1):
        try:
            return exchange.fetch_ohlcv(market, interval, since=since, limit=PAGE_LIMIT, params={"until": until - 1})
        except (ccxt.NetworkError, ccxt.ExchangeNotAvailable) as error:  # RateLimitExceeded is a NetworkError
            if attempt == retries:
                raise
            delay = backoff_delay(attempt, 1.0, 30.0)
            logger.warning("fetch_ohlcv %s failed (%s); retrying in %.1fs", market, error, delay)
            sleep(delay)
    return []
