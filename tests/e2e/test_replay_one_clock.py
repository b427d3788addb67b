"""A replay into a fresh SQLite file runs on one clock (issue 22, review): the trading state created with the
database is ACTIVE since the replay's first market time, not since the wall time it was created at, in
``risk_status`` and in /api/status/ and /api/risk/state/ of a server on that database."""

from __future__ import annotations

import sys

from tests.e2e.test_first_hour import _env, _get, _manage, _spawn, _stop, _token, _wait_for
from tests.support.processes import free_port

START = 1_699_920_000_000  # 2023-11-14 00:00 UTC, on the 1m grid
STEP = 60_000


def _csv(path):
    rows = [f"{START + i * STEP},{100 + i},{100.5 + i},{99.5 + i},{100.2 + i},{10 + i}" for i in range(40)]
    path.write_text("timestamp_ms,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


def test_a_replay_into_a_fresh_database_states_since_in_market_time(tmp_path):
    db = tmp_path / "replay.sqlite3"
    env = _env(db)
    data = _csv(tmp_path / "BTC_USDT-1m.csv")
    _manage(env, "run_feed", "--source", "replay", "--data", str(data), "--speed", "max", "--no-progress")

    status = _manage(env, "risk_status").stdout
    assert "Trading state: ACTIVE since 2023-11-14T00:0" in status, status
    _manage(env, "ensure_admin")
    port = free_port()
    command = [sys.executable, "manage.py", "serve", "--port", str(port), "--feed", "none"]
    server = _spawn("serve", command, env, tmp_path)
    try:
        _wait_for(server, lambda: "serving at" in server.output(), 60, "the serving line")
        token = _token(port)
        api = _get(port, "/api/status/", token)
        assert api["trading_state"]["since"].startswith("2023-11-14T00:0"), api["trading_state"]
        assert api["market_time_ms"] >= START  # the replay's clock: one day, 2023-11-14
        assert api["market_time_ms"] < START + 86_400_000, api["market_time_ms"]
        state = _get(port, "/api/risk/state/", token)
        assert state["since"].startswith("2023-11-14T00:0"), state
    finally:
        _stop(server)


def test_a_replayed_5m_market_is_fresh_at_its_last_close(tmp_path):
    # Two 5m files replayed: the market clock is the last candle's close, and so is each symbol's freshness mark
    # (as a live feed keeps it): /api/status/ gives age 0, not stale (it gave 300 s, STALE, from the candle's open
    # time), as the risk check found it (the trading state stays ACTIVE, not paused for stale data).
    db = tmp_path / "replay.sqlite3"
    env = _env(db)
    five = 5 * STEP
    files = []
    for symbol in ("AAA_USDT", "BBB_USDT"):
        rows = [f"{START + i * five},10,10.5,9.5,10.2,1000" for i in range(12)]
        path = tmp_path / f"{symbol}-5m.csv"
        path.write_text("timestamp_ms,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
        files.append(str(path))
    replay = ("run_feed", "--source", "replay", "--speed", "max", "--lockstep", "--no-progress", "--data", *files)
    _manage(env, *replay)
    last_close = START + 12 * five
    _manage(env, "ensure_admin")
    port = free_port()
    server = _spawn(
        "serve", [sys.executable, "manage.py", "serve", "--port", str(port), "--feed", "none"], env, tmp_path
    )
    try:
        _wait_for(server, lambda: "serving at" in server.output(), 60, "the serving line")
        api = _get(port, "/api/status/", _token(port))
        assert api["market_time_ms"] == last_close, api["market_time_ms"]
        fresh = [(f["symbol"], f["last_seen_ms"], f["age_sec"], f["stale"]) for f in api["freshness"]]
        assert fresh == [("AAA_USDT", last_close, 0, False), ("BBB_USDT", last_close, 0, False)], fresh
        assert api["trading_state"]["state"] == "ACTIVE", api["trading_state"]
    finally:
        _stop(server)
