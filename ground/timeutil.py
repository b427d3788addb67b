"""Epoch milliseconds (the wire format) to and from aware UTC datetimes (the storage format)."""

from datetime import UTC, datetime

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def ms_to_datetime(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def datetime_to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def now_ms() -> int:
    return datetime_to_ms(datetime.now(tz=UTC))


def iso_z(moment: datetime) -> str:
    """A time for JSON, one shape everywhere (as DRF writes a time): ISO 8601 UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Fields stamped by the market clock (marketdata/clock.py), whatever the model: epoch milliseconds, and the
# datetimes made from them (an order's submission and fill, a trade's entry and exit, the trading state's since).
MARKET_TIME_FIELDS = frozenset(
    {"timestamp", "event_time", "source_timestamp", "as_of_ms", "last_seen_ms", "event_time_ms", "changed_at_ms"}
    | {"breaker_checked_ms", "newest", "submitted_at", "filled_at", "entry_time", "exit_time", "since"}
)
WALL_TIME_FIELDS = frozenset({"created_at", "updated_at", "sent_at"})  # what the server's clock records
# One clock for what a trader reads, both labelled (issue 22): the API schema says which clock stamps each time field
# (``clock_label``); the names stay as they are. docs/clock-and-amounts.md says the same.
WALL_TIME_TEXT = (
    "Wall time: the server's clock when this happened, ISO 8601 UTC. Not the market time that orders, signals and "
    "alerts carry (`timestamp`, `event_time`, …): in `make run`'s simulated market that runs 60× faster, in a replay "
    "it is the recorded candles' time."
)
MARKET_TIME_TEXT = (
    "Market time: the market clock's (the live system clock, the simulated market's or a replay's candle time), "
    "as the dashboard shows every time; not the wall time of `created_at` / `updated_at`."
)


def clock_label(fields) -> None:
    """Put the clock that stamps each time field (a name → field mapping, each with a ``help_text``, as a DRF
    serializer's) at the head of its description, the field's own text kept after it."""
    for name, field in fields.items():
        text = WALL_TIME_TEXT if name in WALL_TIME_FIELDS else MARKET_TIME_TEXT if name in MARKET_TIME_FIELDS else None
        if text is not None and not str(field.help_text or "").startswith(text):
            field.help_text = f"{text} {field.help_text}" if field.help_text else text
