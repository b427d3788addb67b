"""The one place the project opens a Redis client of its own (Celery, Channels and Django's cache configure theirs
from settings), and how the strategy-state cache stores its values there."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings


def redis_client(timeout: float = 2.0, url: str | None = None):
    """A client of ``REDIS_URL`` (or ``url``) whose connects and commands give up after ``timeout`` seconds.
    One client (one connection pool, thread-safe, reset after a fork) per URL and timeout in a process."""
    return _client(url or settings.REDIS_URL, timeout)


@lru_cache(maxsize=8)
def _client(url: str, timeout: float):
    import redis

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


class BytesAsTheyAre:
    """The Redis cache's serializer for values that are bytes already (``settings.CACHES["strategy_state"]``: strategy
    states, pickled and signed by their writer). Stored as they are and read back as bytes: Django's default
    serializer would unpickle whatever it reads, before the writer's signature could be checked."""

    def dumps(self, value: bytes) -> bytes:
        if not isinstance(value, bytes):
            raise TypeError(f"this cache stores bytes, not {type(value).__name__}")
        return value

    def loads(self, data: bytes) -> bytes:
        return bytes(data)
