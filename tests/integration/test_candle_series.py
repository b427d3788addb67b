"""CandleSeries: the triggers keep a series' revision, whoever writes the candles, and the strategy cache checks a
cached state against it in the one query it reads candles with."""

from __future__ import annotations

import threading

import psycopg2
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketdata.ingest import bulk_store, market_data_event, persist_market_data
from marketdata.models import Candle, CandleSeries
from tests.support.waiting import wait_until
from trading.signal_service import clear_state_cache, evaluate

STEP = 60_000


def rows(symbol: str, stamps) -> list[tuple]:
    return [(symbol, "1m", ts, 100 + i % 7, 101 + i % 7, 99 + i % 7, 100.5 + i % 7, 10) for i, ts in enumerate(stamps)]


def series(symbol: str) -> tuple[int | None, int]:
    found = CandleSeries.objects.get(symbol=symbol, interval="1m")
    return found.newest, found.revision


@pytest.mark.django_db
def test_appended_candles_keep_the_revision_and_a_late_one_raises_it():
    bulk_store(rows("SER_USDT", range(0, 10 * STEP, STEP)))
    assert series("SER_USDT") == (9 * STEP, 0)
    persist_market_data(market_data_event("SER_USDT", "1m", 10 * STEP, 1, 1, 1, 1, 1))  # the ORM's INSERT
    bulk_store(rows("SER_USDT", range(11 * STEP, 20 * STEP, STEP)))
    assert series("SER_USDT") == (19 * STEP, 0)

    bulk_store(rows("SER_USDT", [20 * STEP + 1, 5 * STEP + 1]))  # one of them is older than the newest
    assert series("SER_USDT") == (20 * STEP + 1, 1)
    bulk_store(rows("SER_USDT", [3 * STEP]))  # already stored: nothing inserted, nothing changed
    assert series("SER_USDT") == (20 * STEP + 1, 1)
    bulk_store(rows("OTHER_USDT", [STEP]))  # another series is its own
    assert series("SER_USDT")[1] == 1 and series("OTHER_USDT") == (STEP, 0)


@pytest.mark.django_db
def test_an_updated_or_deleted_candle_raises_every_revision():
    bulk_store(rows("UPD_USDT", range(0, 5 * STEP, STEP)) + rows("UPD2_USDT", [0]))
    Candle.objects.filter(symbol="UPD_USDT", timestamp=STEP).update(close=1)
    updated = series("UPD_USDT")[1]
    assert updated > 0 and series("UPD2_USDT")[1] > 0  # (PostgreSQL: once a statement; SQLite: once a row)
    Candle.objects.filter(symbol="UPD_USDT").delete()
    deleted = series("UPD_USDT")[1]
    assert deleted > updated
    bulk_store(rows("UPD_USDT", [0]))  # refilled from the start: older than the newest the series had
    assert series("UPD_USDT") == (4 * STEP, deleted + 1)


@pytest.mark.django_db
def test_a_cached_evaluation_reads_one_statement_however_long_the_history():
    clear_state_cache()
    bulk_store(rows("LONG_USDT", range(0, 5_000 * STEP, STEP)))
    evaluate("momentum", "LONG_USDT", "1m", 4_998 * STEP)  # rebuilds once and caches
    with CaptureQueriesContext(connection) as queries:
        _, _, path = evaluate("momentum", "LONG_USDT", "1m", 4_999 * STEP)
    assert path == "cache+1"
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    clear_state_cache()


def _waits_for_a_lock(backend_pid: int) -> bool:
    """PostgreSQL's own word that a session is blocked on a lock (not merely slow)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [backend_pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def _connect():
    settings = connection.settings_dict
    session = psycopg2.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"]
    )
    return session


def _insert(session, ts: int) -> None:
    with session.cursor() as cursor:
        cursor.execute(
            'INSERT INTO marketdata_candle ("symbol", "interval", "timestamp", "open", "high", "low", "close", '
            '"volume", "created_at") VALUES (%s, %s, %s, 1, 1, 1, 1, 1, now())',
            ["RACE_USDT", "1m", ts],
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("first", "second", "late"), [(100 * STEP, 99 * STEP, True), (99 * STEP, 100 * STEP, False)])
def test_concurrent_writers_of_a_series_are_ordered_by_its_lock(first, second, late):
    """The second writer inserts while the first has not committed: it waits for the series row, then judges its
    candle against what the first committed — a candle behind a newer committed one is late."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    bulk_store(rows("RACE_USDT", [0]))
    a, b = _connect(), _connect()
    try:
        _insert(a, first)  # holds the series row until it commits
        done = threading.Event()

        def second_writer() -> None:
            _insert(b, second)
            b.commit()
            done.set()

        thread = threading.Thread(target=second_writer)
        thread.start()
        wait_until(lambda: _waits_for_a_lock(b.get_backend_pid()), timeout=10, message="the second writer to wait")
        assert not done.is_set(), "the second writer should wait for the first one's series lock"
        a.commit()
        thread.join(10)
        assert done.is_set()
    finally:
        a.close()
        b.close()
    assert series("RACE_USDT") == (100 * STEP, 1 if late else 0)
