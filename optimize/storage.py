"""Optuna's RDB storage on the project's own database (Django's ``DATABASES["default"]``): PostgreSQL in
production, the SQLite file embedded. Optuna keeps its own tables there (``studies``, ``trials``, …, created on
first use), so every worker pointed at the same ``DATABASE_URL`` reads and writes the same studies."""

from __future__ import annotations

from functools import cache

DRIVERS = {
    "django.db.backends.postgresql": "postgresql+psycopg2",
    "django.db.backends.sqlite3": "sqlite",
}


def storage_url() -> str:
    """SQLAlchemy's URL of Django's default database (the test database under pytest-django)."""
    from django.db import connections
    from sqlalchemy.engine import URL

    db = connections["default"].settings_dict
    driver = DRIVERS.get(db["ENGINE"])
    if driver is None:
        raise ValueError(f"optimization needs PostgreSQL or SQLite, not {db['ENGINE']}")
    if driver == "sqlite":
        return str(URL.create("sqlite", database=str(db["NAME"])))
    url = URL.create(
        driver,
        username=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None,
        port=int(db["PORT"]) if db.get("PORT") else None,
        database=db["NAME"],
    )
    return url.render_as_string(hide_password=False)


@cache
def _storage(url: str):
    import optuna

    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 20}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


_storage_urls: set[str] = set()


def get_storage():
    """This process's storage (one engine and pool per process and database)."""
    url = storage_url()
    _storage_urls.add(url)
    return _storage(url)


def close() -> None:
    """Close this process's storage connections (a test database can then be dropped)."""
    for url in list(_storage_urls):
        _storage(url).engine.dispose()
    _storage_urls.clear()
    _storage.cache_clear()
