"""Is a real service configured and reachable? Used by the service markers."""

from __future__ import annotations

import shutil

from django.conf import settings

from tests.support.paths import shared_data_problem


def _postgres() -> tuple[bool, str | None]:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return False, "DATABASE_URL is not a postgres:// URL"
    import psycopg2

    params = settings.DATABASES["default"]
    try:
        psycopg2.connect(
            host=params["HOST"] or "127.0.0.1",
            port=params["PORT"] or 5432,
            user=params["USER"],
            password=params["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg2.Error as error:
        return True, f"cannot connect: {error}"
    return True, None


def _redis() -> tuple[bool, str | None]:
    if not settings.REDIS_URL:
        return False, "REDIS_URL is not set"
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return True, f"cannot connect to {settings.REDIS_URL}: {error}"
    return True, None


def _workers() -> tuple[bool, str | None]:
    for check in (_postgres, _redis):
        configured, problem = check()
        if problem:
            return configured, problem
    return True, None


def _browser() -> tuple[bool, str | None]:
    if shutil.which("chromium") is None:
        return False, "Debian's chromium is not installed"
    return True, None


def _shared_data() -> tuple[bool, str | None]:
    return True, shared_data_problem()  # always "configured": an embedded run under CI needs the data too


def check(name: str) -> tuple[bool, str | None]:
    """(configured, problem): problem is None when the service can be used."""
    checks = {
        "postgres": _postgres,
        "redis": _redis,
        "workers": _workers,
        "browser": _browser,
        "shared_data": _shared_data,
    }
    return checks[name]()


def flush_broker() -> None:
    """Empty the test Redis database (queues and unacked tasks of earlier runs)."""
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
