"""Waiting on an event with a deadline, never for a fixed time (a test that sleeps is slow when the machine is idle
and flaky when it is busy).

``wait_until(predicate)`` polls until the predicate holds. To show that something did *not* happen, put a marker
behind it on the same ordered path (a pub/sub channel, a channel-layer channel, the next candle of a feed), wait
until the marker arrives, and then assert that nothing else came before it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30, interval: float = 0.1, message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail with ``message`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
