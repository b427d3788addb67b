"""A second feed never takes over the market `make run` serves (issue 22's review, HIGH 2), through the real commands.

While `manage.py serve` runs its simulated market on a SQLite database, a replay of candles two hours ahead of that
market and a `run_feed --source sim` into the same database are refused with one line, exit 2: the served market's
feed symbols (what the data-stale watch and the page's freshness read), its clock and its trading day stay its own.
Once the server has stopped, the same replay is accepted (the market clock goes on from the stored candles).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.support import processes
from tests.support.processes import ROOT, _spawn, _wait_for, free_port, wait_until

MINUTE = 60_000
PORTFOLIO_DAY = "SELECT day FROM execution_portfolio"
SIM = [("BTC_USDT",), ("ETH_USDT",), ("SOL_USDT",), ("XRP_USDT",)]


def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("PYTEST")}
    env.update(DATABASE_URL=f"sqlite:///{db}", PYTHONUNBUFFERED="1")
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return processes.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def _refused(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_a_replay_or_a_second_simulation_into_the_served_market_is_refused(tmp_path):
    db = tmp_path / "db.sqlite3"
    env = _env(db)
    migrated = _manage(env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    ahead = tmp_path / "BTC_USDT-1m.csv"
    start = (int(time.time() * 1000) // MINUTE + 120) * MINUTE  # two hours ahead of the simulated market
    ahead.write_text("".join(f"{start + i * MINUTE},90000,90010,89990,90005,3\n" for i in range(5)))
    replay = ("run_feed", "--source", "replay", "--data", str(ahead), "--speed", "max", "--no-progress")

    server = _spawn("serve", [sys.executable, "manage.py", "serve", "--port", str(free_port())], env, tmp_path)
    try:
        _wait_for(server, lambda: "serving at" in server.output(), 60, "the serving line")
        wait_until(lambda: _query(db, "SELECT symbol FROM marketdata_feedsymbol ORDER BY 1") == SIM, timeout=30)

        line = _refused(_manage(env, *replay))
        assert f"refused: `manage.py serve` (pid {server.popen.pid}) runs its simulated market on {db}" in line, line
        assert "would take over its symbols, its market clock and its trading day" in line, line
        own = (
            f"DATABASE_URL=sqlite:///replay.sqlite3 .venv/bin/python manage.py run_feed --source replay --data {ahead}"
        )
        assert line.endswith(own), line
        line = _refused(_manage(env, "run_feed", "--source", "sim", "--symbols", "BTC_USDT", "--steps", "5"))
        assert "runs its simulated market" in line, line

        assert _query(db, "SELECT symbol, source FROM marketdata_feedsymbol ORDER BY 1") == [(s, "sim") for (s,) in SIM]
        assert _query(db, f"SELECT COUNT(*) FROM marketdata_candle WHERE timestamp >= {start}") == [(0,)]
        # the trading day is the served market's (the replay's candles are the next day after 22:00 UTC)
        market_day = "SELECT date(MAX(timestamp) / 1000 + 60, 'unixepoch') FROM marketdata_candle"
        days, ((market,),) = _query(db, PORTFOLIO_DAY), _query(db, market_day)
        assert all(day is None or day <= market for (day,) in days), (days, market)
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-5000:]

    done = _manage(env, *replay)  # the server stopped: the replay carries the market on
    assert done.returncode == 0, done.stdout + done.stderr
    assert _query(db, f"SELECT COUNT(*) FROM marketdata_candle WHERE timestamp >= {start}") == [(5,)]
