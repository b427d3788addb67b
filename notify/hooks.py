"""The bus observer (``EVENT_OBSERVERS`` in settings, called by ground/bus.py after the commit that stored an
alert or an order result): hand the event to the notify queue when some destination wants it. Cheap on purpose:
one enqueue, and a look at the enabled destinations at most every few seconds — never a delivery."""

from __future__ import annotations

import threading
import time

from . import dispatch, rules

CACHE_SECONDS = 5.0
_lock = threading.Lock()
_cache: dict = {"until": 0.0, "specs": ()}


def _specs() -> tuple[tuple[str, tuple[str, ...]], ...]:
    with _lock:
        if time.monotonic() < _cache["until"]:
            return _cache["specs"]
    from .models import Destination

    specs = tuple(
        (level, tuple(topics or rules.DEFAULT_TOPICS))
        for level, topics in Destination.objects.filter(enabled=True).values_list("level", "topics")
    )
    with _lock:
        _cache.update(until=time.monotonic() + CACHE_SECONDS, specs=specs)
    return specs


def forget(**kwargs) -> None:
    """A destination changed in this process: look again at the next event."""
    with _lock:
        _cache["until"] = 0.0


def observe(topic: str, event: dict) -> None:
    wanted = rules.event_topic(event)
    if wanted is None:
        return
    if any(rules.admits(level, topics, *wanted) for level, topics in _specs()):
        from .tasks import route

        dispatch.submit(route, event)
