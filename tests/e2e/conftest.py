"""Fixtures shared by the end-to-end modules."""

from __future__ import annotations

import pytest

from ground import bus


@pytest.fixture
def published(monkeypatch) -> list[dict]:
    """Every market_data event that goes through the real ``bus.publish``, in order (the feeds' tests)."""
    seen: list[dict] = []
    real = bus.publish

    def spy(event):
        result = real(event)
        if event.get("type") == "market_data":
            seen.append(result)
        return result

    monkeypatch.setattr(bus, "publish", spy)
    return seen
