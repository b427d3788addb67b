"""download_candles against the fake MEXC server: pages through fetch_ohlcv, respects the rate limit, resumes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from marketdata.download import parse_time
from marketdata.validation import validate_lines
from tests.support.fake_mexc import FakeMexc, klines_from_csv
from tests.support.paths import CANDLES
from trading.backtest import read_bars

SOURCE = CANDLES / "UNITTEST_BTC-1m.csv"
MARKET_ID, SYMBOL = "UNITTESTBTC", "UNITTEST_BTC"

pytestmark = pytest.mark.shared_data


@pytest.fixture(params=["back to back", "as recorded"])
def fake(settings, request):
    every = 60_000 if request.param == "back to back" else None
    server = FakeMexc({MARKET_ID: klines_from_csv(SOURCE, limit=1300, every_ms=every)}).start()
    for name, value in server.settings().items():
        setattr(settings, name, value)
    yield server
    server.stop()


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("download_candles", "--no-progress", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines()[1:] if line.strip()]


def expected_rows(fake: FakeMexc, since: int, until: int) -> list[str]:
    """The fake's candles that opened in [since, until) and closed by until, as the source CSV wrote them."""
    return [
        ",".join([str(k.t), k.o, k.h, k.l, k.c, k.v])
        for k in fake.history[MARKET_ID]
        if since <= k.t and k.t + 60_000 <= until
    ]


def same_candles(written: list[str], wanted: list[str]) -> bool:
    """Equal as numbers (the file writes what ccxt parsed, e.g. 1.5E-4 may come back as 0.00015)."""
    parse = [r for r in validate_lines(written)]
    want = [r for r in validate_lines(wanted)]
    return parse == want


def test_pages_through_fetch_ohlcv_and_writes_the_replay_format(fake, tmp_path):
    history = fake.history[MARKET_ID]
    since, until = history[0].t, history[1100].t
    out = run(
        "--symbols", SYMBOL, "--interval", "1m", "--since", str(since), "--until", str(until), "--out", str(tmp_path)
    )
    path = tmp_path / f"{SYMBOL}-1m.csv"
    assert path.read_text().splitlines()[0] == "timestamp_ms,open,high,low,close,volume"
    written = rows(path)
    wanted = expected_rows(fake, since, until)
    assert len(written) == len(wanted) and same_candles(written, wanted)
    requests = fake.kline_requests()
    windows = -(-(until - since) // (500 * 60_000))
    assert len(requests) == windows, "one request per window of 500 candles"
    assert [int(q["startTime"]) for q in requests] == [since + i * 500 * 60_000 for i in range(windows)]
    assert all(int(q["limit"]) <= 1000 for q in requests)
    assert f"{len(wanted)} candles written" in out
    # the backtest's loader reads the written file as the replay's validator does
    bars = list(read_bars([str(path)]))
    assert [bar.row for bar in bars] == list(validate_lines(path.read_text().splitlines()))

    # ccxt's rate limiter spaces the requests (MEXC: 20 per second → at least ~50 ms apart)
    times = [t for p, t in fake.request_times if p == "/api/v3/klines"]
    assert all(b - a >= 0.04 for a, b in zip(times, times[1:], strict=False))


def test_resumes_where_the_file_ends(fake, tmp_path):
    history = fake.history[MARKET_ID]
    since, middle, until = history[0].t, history[600].t, history[1250].t
    run("--symbols", SYMBOL, "--since", str(since), "--until", str(middle), "--out", str(tmp_path))
    path = tmp_path / f"{SYMBOL}-1m.csv"
    first = rows(path)
    assert same_candles(first, expected_rows(fake, since, middle))
    last_ts = int(first[-1].split(",")[0])

    before = len(fake.kline_requests())
    out = run("--symbols", SYMBOL, "--since", str(since), "--until", str(until), "--out", str(tmp_path))
    resumed_requests = fake.kline_requests()[before:]
    assert int(resumed_requests[0]["startTime"]) == last_ts + 60_000, "starts right after the last stored row"
    complete = rows(path)
    assert same_candles(complete, expected_rows(fake, since, until)), "no duplicate, no hole"
    assert complete[: len(first)] == first
    assert f"{len(complete) - len(first)} candles written" in out

    # nothing new to fetch: no rows added, the file is unchanged
    again = run("--symbols", SYMBOL, "--since", str(since), "--until", str(until), "--out", str(tmp_path))
    assert "0 candles written" in again and rows(path) == complete


def test_bad_input_is_a_clear_error(tmp_path, settings):
    with pytest.raises(CommandError) as error:
        run("--symbols", SYMBOL, "--since", "yesterday", "--out", str(tmp_path))
    assert error.value.returncode == 2 and "yesterday" in str(error.value)
    with pytest.raises(CommandError) as error:
        run("--symbols", SYMBOL, "--since", "2024-02-01", "--until", "2024-01-01", "--out", str(tmp_path))
    assert error.value.returncode == 2
    broken = tmp_path / f"{SYMBOL}-1m.csv"
    broken.write_text("timestamp_ms,open,high,low,close,volume\n1509836520000,0.1,0.1,0.1\n")
    settings.MEXC_REST_URL = "http://127.0.0.1:9"  # never reached: the file is checked first
    with pytest.raises(CommandError) as error:
        run("--symbols", SYMBOL, "--since", "2024-01-01", "--until", "2024-01-02", "--out", str(tmp_path))
    assert error.value.returncode == 2 and "last line" in str(error.value)


def test_parse_time():
    assert parse_time("2024-01-01") == 1_704_067_200_000
    assert parse_time("2024-01-01T00:01") == 1_704_067_260_000
    assert parse_time("2024-01-01T01:00:00+01:00") == 1_704_067_200_000
    assert parse_time("1704067200000") == 1_704_067_200_000
