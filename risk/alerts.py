"""Alerts: stored by the bus when published, pushed to the dashboard after commit."""

from __future__ import annotations

from ground import bus
from marketdata import clock

from .models import Alert


def persist_alert(event: dict) -> Alert:
    return Alert.objects.create(
        level=event["level"],
        code=event["code"],
        message=event["message"],
        symbol=event.get("symbol", ""),
        timestamp=event["timestamp"],
    )


def raise_alert(level: str, code: str, message: str, *, timestamp: int | None = None, symbol: str = "") -> dict:
    event = {
        "type": "alert",
        "level": level,
        "code": code,
        "message": message,
        "timestamp": timestamp if timestamp is not None else clock.now_ms(),  # market time
    }
    if symbol:
        event["symbol"] = symbol
    return bus.publish(event)
