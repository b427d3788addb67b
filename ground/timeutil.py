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
