"""CSV replay: real recorded candles stored exactly once, published once in time order, bad rows refused by reason."""

from __future__ import annotations

import io
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from ground import bus
from marketdata import clock
from marketdata.feeds.replay import Replay, resolve_sources
from marketdata.models import Candle, FeedSymbol
from marketdata.watchlist import is_tradable
from tests.support import processes
from tests.support.paths import CANDLES

ROOT = Path(__file__).resolve().parents[2]
REAL_CONSUMERS = dict(django_settings.EVENT_CONSUMERS)
HEADER = "timestamp_ms,open,high,low,close,volume\n"

pytestmark = pytest.mark.shared_data


def data_rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines()[1:] if line.strip()]


def slice_file(tmp_path: Path, name: str, rows: int, start: int = 0) -> Path:
    """The first ``rows`` data rows of a real file, under the same SYMBOL-INTERVAL.csv name."""
    lines = data_rows(CANDLES / name)[start : start + rows]
    out = tmp_path / name
    out.write_text(HEADER + "\n".join(lines) + "\n")
    return out


def replay(*args: str) -> str:
    out = io.StringIO()
    call_command("run_feed", "--source", "replay", "--no-progress", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def summary(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and value.strip().isdigit():
            values[key.strip()] = int(value)
    return values


@pytest.fixture(autouse=True)
def only_the_feed(settings):
    """The feed's tests watch what the feed publishes; the downstream pipeline has its own tests
    (``test_replay_drives_the_pipeline`` puts the real consumers back with ``real_pipeline``)."""
    bus._consumers.cache_clear()
    settings.EVENT_CONSUMERS = {}
    yield
    bus._consumers.cache_clear()


@pytest.fixture
def real_pipeline(settings):
    settings.EVENT_CONSUMERS = REAL_CONSUMERS
    bus._consumers.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_real_files_are_stored_once_and_a_second_replay_adds_nothing():
    files = [CANDLES / "ETH_BTC-5m.csv", CANDLES / "ADA_BTC-5m.csv"]
    expected = sum(len(data_rows(f)) for f in files)
    first = summary(replay("--no-publish", "--data", *map(str, files)))
    assert first["rows read"] == expected
    assert first["candles stored"] == expected and first["already present"] == 0 and first["rejected"] == 0
    assert Candle.objects.count() == expected
    assert Candle.objects.filter(symbol="ADA_BTC", interval="5m").count() == len(data_rows(files[1]))

    # the stored values are the file's, as Decimal
    ts, o, h, lo, c, v = data_rows(files[0])[0].split(",")
    candle = Candle.objects.get(symbol="ETH_BTC", interval="5m", timestamp=int(ts))
    assert (candle.open, candle.high, candle.low, candle.close) == tuple(Decimal(x) for x in (o, h, lo, c))
    assert candle.volume == Decimal(v)

    second = summary(replay("--no-publish", "--data", *map(str, files)))
    assert second["rows read"] == expected and second["candles stored"] == 0
    assert second["already present"] == expected
    assert Candle.objects.count() == expected


@pytest.mark.django_db(transaction=True)
def test_replay_publishes_each_new_candle_once_in_time_order_across_files(tmp_path, published):
    eth = slice_file(tmp_path, "ETH_BTC-5m.csv", 40)
    ltc = slice_file(tmp_path, "LTC_BTC-5m.csv", 30, start=5)
    result = summary(replay("--data", str(eth), str(ltc)))
    assert result["candles stored"] == 70 and result["published"] == 70
    assert len(published) == 70
    keys = [(e["timestamp"], e["symbol"]) for e in published]
    assert keys == sorted(keys), "events interleave across files by timestamp"
    assert {e["symbol"] for e in published[:2]} == {"ETH_BTC"}  # LTC starts 5 candles later
    assert len(set(keys)) == 70
    assert all(e["interval"] == "5m" for e in published)
    first = data_rows(eth)[0].split(",")
    # exact decimal strings, as the file has them
    assert Decimal(published[0]["price"]) == Decimal(first[4]) and Decimal(published[0]["volume"]) == Decimal(first[5])

    # replaying again, plus a longer file that overlaps: only the really new candles go out
    published.clear()
    (tmp_path / "more").mkdir()
    longer = slice_file(tmp_path / "more", "ETH_BTC-5m.csv", 45)
    again = summary(replay("--data", str(eth), str(ltc)))
    assert again["candles stored"] == 0 and again["published"] == 0 and published == []
    more = summary(replay("--data", str(longer)))
    assert more["candles stored"] == 5 and more["already present"] == 40
    assert [e["timestamp"] for e in published] == [int(r.split(",")[0]) for r in data_rows(longer)[40:]]
    assert Candle.objects.count() == 75


@pytest.mark.django_db(transaction=True)
def test_replay_time_drives_the_market_clock_and_symbols_become_tradable(tmp_path, settings):
    settings.SYMBOL_WHITELIST = []
    seen_clock: list[tuple[int, int]] = []
    real = bus.publish

    def spy(event):
        if event.get("type") == "market_data":
            seen_clock.append((event["timestamp"], clock.now_ms()))
        return real(event)

    eth = slice_file(tmp_path, "ETH_BTC-5m.csv", 12)
    import marketdata.ingest  # noqa: F401  (publish_stored resolves bus.publish at call time)

    bus_publish, bus.publish = bus.publish, spy
    try:
        replay("--data", str(eth))
    finally:
        bus.publish = bus_publish
    # the market's time is when each candle is known: its close, 5 minutes after its open time
    assert seen_clock and all(event_ts + 300_000 == now for event_ts, now in seen_clock)
    last = int(data_rows(eth)[-1].split(",")[0]) + 300_000
    assert clock.now_ms() == last, "other processes see the replay's time through the shared clock"
    assert FeedSymbol.objects.filter(symbol="ETH_BTC", source="replay").exists()
    assert is_tradable("ETH_BTC")
    settings.SYMBOL_WHITELIST = ["BTC_USDT"]
    assert not is_tradable("ETH_BTC"), "SYMBOL_WHITELIST still says no"
    clock.release_shared_event_time()
    assert abs(clock.now_ms() - time.time() * 1000) < 5_000


BROKEN_ROWS = [
    ("1515560100000,0.0984,0.0994766,0.09828605,0.0994766,1820.544474", None),
    ("1515560400000,0.09946999,0.0997238,0.099,0.09969,2527.921003", None),
    ("1515560700000,abc,0.0997238,0.099,0.09969,1", "non_numeric"),
    ("1515560700000,NaN,0.0997238,0.099,0.09969,1", "non_numeric"),
    ("1515560700000,0.0995,0.0997238,0.099,inf,1", "non_numeric"),
    ("1515560700000,0,0.0997238,0.099,0.0995,1", "non_positive_price"),
    ("1515560700000,-0.5,0.0997238,0.099,0.0995,1", "non_positive_price"),
    ("1515560700000,0.0995,0.098,0.099,0.0985,1", "high_below_low"),
    ("1515560700000,0.0995,0.0997,0.099,0.0999,1", "open_close_outside_range"),
    ("1515560700000,0.0989,0.0997,0.099,0.0995,1", "open_close_outside_range"),
    ("1515560700000,0.0995,0.0997,0.099,0.0995,-3", "negative_volume"),
    ("1515560700000,0.0995,0.0997,0.099", "malformed_line"),
    ("this is not a candle", "malformed_line"),
    ("1515560700000;0.0995;0.0997;0.099;0.0995;3", "malformed_line"),
    # after the year 9999: overflowed PostgreSQL's bigint (or failed the event schema) and aborted the replay
    ("99999999999999999999999,0.0995,0.0997,0.099,0.0995,3", "bad_timestamp"),
    ("999999999999999999,0.0995,0.0997,0.099,0.0995,3", "bad_timestamp"),
    ("1515560700000,0.0995,0.0997,0.099,0.0995,3", None),
    ("1515560700000,0.0995,0.0997,0.099,0.0995,4", "duplicate_timestamp"),
    ("1515560400000,0.0995,0.0997,0.099,0.0995,4", "timestamp_going_back"),
    ("1515560100000,0.0995,0.0997,0.099,0.0995,4", "timestamp_going_back"),
    ("1515561000000,0.0995,0.0997,0.099,0.0995,0", None),
]


@pytest.mark.django_db(transaction=True)
def test_broken_rows_are_refused_one_by_one_with_the_right_counts(tmp_path, published):
    path = tmp_path / "BAD_BTC-5m.csv"
    path.write_text(HEADER + "\n".join(row for row, _ in BROKEN_ROWS) + "\n\n")
    out = replay("--data", str(path))
    result = summary(out)
    good = [row for row, reason in BROKEN_ROWS if reason is None]
    expected_reasons: dict[str, int] = {}
    for _, reason in BROKEN_ROWS:
        if reason:
            expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert result["rows read"] == len(BROKEN_ROWS)
    assert result["candles stored"] == len(good) == 4
    assert result["rejected"] == len(BROKEN_ROWS) - len(good)
    for reason, count in expected_reasons.items():
        assert result[reason] == count, (reason, out)
    stored = list(Candle.objects.filter(symbol="BAD_BTC").values_list("timestamp", flat=True))
    assert stored == [int(row.split(",")[0]) for row in good]
    assert [e["timestamp"] for e in published] == stored


@pytest.mark.django_db(transaction=True)
def test_missing_empty_and_badly_named_files_are_clear_errors_with_exit_code_2(tmp_path):
    empty = tmp_path / "EMPTY_BTC-5m.csv"
    empty.write_text("")
    header_only = tmp_path / "HEAD_BTC-5m.csv"
    header_only.write_text(HEADER)
    odd_name = tmp_path / "candles.csv"
    odd_name.write_text(HEADER + BROKEN_ROWS[0][0] + "\n")
    cases = {
        str(tmp_path / "MISSING_BTC-5m.csv"): "no such file",
        str(empty): "empty",
        str(header_only): "empty",
        str(odd_name): "SYMBOL-INTERVAL.csv",
    }
    for path, message in cases.items():
        with pytest.raises(CommandError) as error:
            replay("--data", path)
        assert error.value.returncode == 2 and message in str(error.value) and path in str(error.value)
    assert Candle.objects.count() == 0
    # an explicit symbol and interval make the oddly named file usable
    assert summary(replay("--data", str(odd_name), "--symbols", "ODD_BTC", "--interval", "5m"))["candles stored"] == 1


def test_the_command_exits_with_code_2_and_a_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'unused.sqlite3'}"
    env.pop("REDIS_URL", None)
    missing = tmp_path / "NOPE_BTC-5m.csv"
    proc = processes.run(
        [sys.executable, "manage.py", "run_feed", "--source", "replay", "--data", str(missing)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and str(missing) in proc.stderr


@pytest.mark.django_db(transaction=True)
def test_speed_is_a_multiple_of_real_time(tmp_path):
    path = slice_file(tmp_path, "ETH_BTC-5m.csv", 4)
    sleeps: list[float] = []
    summary_ = Replay(resolve_sources([str(path)], None, None), speed=600, sleep=sleeps.append).run()
    assert summary_.published == 4
    assert sleeps == pytest.approx([0.5, 0.5, 0.5])  # 300 s between candles at 600× real time

    Candle.objects.all().delete()
    started = time.monotonic()
    result = summary(replay("--data", str(path), "--speed", "1200"))  # 3 gaps × 0.25 s
    assert result["published"] == 4
    assert 0.7 <= time.monotonic() - started < 10

    Candle.objects.all().delete()
    started = time.monotonic()
    replay("--data", str(path), "--speed", "max")
    assert time.monotonic() - started < 5
    with pytest.raises(CommandError):
        replay("--data", str(path), "--speed", "0")


@pytest.mark.django_db(transaction=True)
def test_replay_drives_the_pipeline(tmp_path, settings, real_pipeline):
    """A replay's market_data reaches the signal engine: signals are computed from the replayed candles."""
    from trading.models import Signal

    settings.PAPER_FAILURE_RATE = "0"
    path = slice_file(tmp_path, "ETH_BTC-5m.csv", 400)
    result = summary(replay("--data", str(path)))
    assert result["published"] == 400
    signals = Signal.objects.filter(symbol="ETH_BTC", interval="5m")
    assert signals.exists()
    stamps = set(Candle.objects.filter(symbol="ETH_BTC").values_list("timestamp", flat=True))
    assert set(signals.values_list("timestamp", flat=True)) <= stamps


@pytest.mark.django_db(transaction=True)
def test_replay_counts_signals_orders_and_failed_consumers(tmp_path, settings, real_pipeline, monkeypatch):
    """The summary says what the pipeline made of the replay; a consumer that failed on any event makes the command
    fail (it used to print a traceback per event and still exit 0)."""
    settings.PAPER_FAILURE_RATE = "0"
    path = slice_file(tmp_path, "ETH_BTC-5m.csv", 200)
    result = summary(replay("--data", str(path)))
    assert result["signals"] >= 1 and result["orders"] >= 1 and result["errors"] == 0

    def broken(event):
        raise RuntimeError("a consumer that fails")

    monkeypatch.setattr("trading.tasks.process_market_data", broken)
    later = slice_file(tmp_path, "ETH_BTC-5m.csv", 5, start=200)
    out = io.StringIO()
    with pytest.raises(CommandError, match="5 consumer tasks failed") as error:
        call_command("run_feed", "--source", "replay", "--no-progress", "--data", str(later), stdout=out)
    assert error.value.returncode == 1
    assert summary(out.getvalue())["errors"] == 5


@pytest.mark.django_db(transaction=True)
def test_a_strategy_that_cannot_be_built_stops_the_replay_before_it_stores_anything(tmp_path, settings):
    settings.STRATEGY = f"signals_file:path={tmp_path / 'missing.csv'}"
    path = slice_file(tmp_path, "ETH_BTC-5m.csv", 5)
    with pytest.raises(CommandError, match="cannot read") as error:
        replay("--data", str(path))
    assert error.value.returncode == 2 and not Candle.objects.exists()
