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
