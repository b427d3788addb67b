"""The strategy-state store is Django's cache framework: with Redis a database of its own, holding the signed states
as bytes (the cache unpickles nothing it reads); embedded, local memory in the process."""

from __future__ import annotations

import json
import os
import pickle
import sys

import pytest
from django.conf import settings as django_settings

from ground.redis_client import redis_client
from tests.e2e.test_signal_ordering import SPEC, csv_events, store
from tests.support import processes
from tests.support.processes import ROOT
from trading.signal_service import clear_state_cache, evaluate, state_key, state_store
from trading.strategies import strategy_from_spec

SHOW_CACHE = (
    "import json; from django.conf import settings; "
    "print(json.dumps([settings.STRATEGY_CACHE_URL, settings.CACHES['strategy_state']]))"
)


def _cache_settings(tmp_path, **env) -> tuple[str, dict]:
    """STRATEGY_CACHE_URL and CACHES["strategy_state"] as a process started with ``env`` reads them."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    done = processes.run(
        [sys.executable, "-c", SHOW_CACHE],
        env={**base, "DJANGO_SETTINGS_MODULE": "cdb_project.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    url, cache = json.loads(done.stdout.strip().splitlines()[-1])
    return url, cache


def test_with_redis_the_strategy_cache_has_a_redis_database_of_its_own(tmp_path):
    url, cache = _cache_settings(tmp_path, REDIS_URL="redis://cache-host:6379/0", REDIS_PASSWORD="s3cret")
    assert url == "redis://:s3cret@cache-host:6379/1"  # REDIS_URL's server, database 1, with the password
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache" and cache["LOCATION"] == url
    assert cache["OPTIONS"]["serializer"] == "ground.redis_client.BytesAsTheyAre"

    url, cache = _cache_settings(tmp_path, REDIS_URL="redis://h:6379/0", STRATEGY_CACHE_URL="redis://other:6380/4")
    assert url == cache["LOCATION"] == "redis://other:6380/4"


def test_embedded_the_strategy_cache_is_local_memory_in_the_process(tmp_path):
    url, cache = _cache_settings(tmp_path)
    assert url == "" and cache["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


class _Exploding:
    """A pickle that runs code when it is loaded."""

    def __reduce__(self):
        return (_explode, ())


EXPLODED: list[bool] = []


def _explode() -> None:
    EXPLODED.append(True)


@pytest.fixture
def _fresh_state_cache():
    clear_state_cache()
    yield
    clear_state_cache()


@pytest.mark.redis
@pytest.mark.django_db
def test_states_are_stored_as_signed_bytes_and_a_foreign_pickle_is_never_loaded(_fresh_state_cache):
    assert django_settings.STRATEGY_CACHE_URL, "REDIS_URL is set: the cache is Redis"
    events = csv_events("CACHE_BTC", count=100)  # more than the 64 candles a rebuild reads at once
    store(events)
    for event in events[:-1]:
        evaluate(SPEC, "CACHE_BTC", "5m", event["timestamp"])
    key = state_key(strategy_from_spec(SPEC), "CACHE_BTC", "5m", events[-2]["timestamp"])
    raw = redis_client(url=django_settings.STRATEGY_CACHE_URL).get(state_store().make_key(key))
    assert raw == state_store().get_many([key])[key] and len(raw) > 32  # the writer's bytes, as they are
    _, _, path = evaluate(SPEC, "CACHE_BTC", "5m", events[-1]["timestamp"])
    assert path == "cache+1", path

    # Whoever can write to Redis gets no code run by the cache: what it reads is bytes, checked against the HMAC.
    client = redis_client(url=django_settings.STRATEGY_CACHE_URL)
    client.set(state_store().make_key(key), pickle.dumps(_Exploding()))
    _, _, path = evaluate(SPEC, "CACHE_BTC", "5m", events[-1]["timestamp"])
    assert not EXPLODED and path == "cache+2", path  # skipped the foreign entry, used the one before it


@pytest.mark.redis
@pytest.mark.django_db
def test_clearing_the_state_cache_deletes_its_keys_only(_fresh_state_cache):
    client = redis_client(url=django_settings.STRATEGY_CACHE_URL)
    client.set("cdb-test:not-a-strategy-state", b"kept", ex=60)
    events = csv_events("CLEAR_BTC", count=20)
    store(events)
    evaluate(SPEC, "CLEAR_BTC", "5m", events[-1]["timestamp"])
    key = state_key(strategy_from_spec(SPEC), "CLEAR_BTC", "5m", events[-1]["timestamp"])
    assert state_store().get_many([key])
    clear_state_cache()
    assert state_store().get_many([key]) == {}
    assert client.get("cdb-test:not-a-strategy-state") == b"kept"
    client.delete("cdb-test:not-a-strategy-state")
