"""Alerts: stored by the bus when published, pushed to the dashboard after commit."""

from __future__ import annotations

from collections.abc import Iterable

from ground import bus
from marketdata import clock

from .models import Alert


def _row(event: dict) -> Alert:
    return Alert(
        level=event["level"],
        code=event["code"],
        message=event["message"],
        symbol=event.get("symbol", ""),
        timestamp=event["timestamp"],
    )


def persist_alert(event: dict) -> Alert:
    alert = _row(event)
    alert.save(force_insert=True)
    return alert


def alert_event(level: str, code: str, message: str, *, timestamp: int | None = None, symbol: str = "") -> dict:
    event = {
        "type": "alert",
        "level": level,
        "code": code,
        "message": message,
        "timestamp": timestamp if timestamp is not None else clock.now_ms(),  # market time
    }
    if symbol:
        event["symbol"] = symbol
    return event


def raise_alert(level: str, code: str, message: str, *, timestamp: int | None = None, symbol: str = "") -> dict:
    return bus.publish(alert_event(level, code, message, timestamp=timestamp, symbol=symbol))


def raise_alerts(events: Iterable[dict]) -> list[dict]:
    """Several alerts (``alert_event``s) of one decision: validated, stored with one INSERT, published after commit."""
    published = bus.publish_batch(list(events), stored=True)
    Alert.objects.bulk_create([_row(event) for event in published])
    return published
