"""The one place the project opens a Redis client of its own (Celery and Channels configure theirs from settings)."""

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
