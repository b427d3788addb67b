"""A feed never brings markets of another quote currency into the account already stored (review22b, HIGH A),
through the real commands on a SQLite file: once a database's account counts its money in BTC (an ETH_BTC market),
`run_feed --source sim|mexc --symbols BTC_USDT` and `serve` (its USDT simulated market) are refused with the
replay's line, exit 2, storing nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.commands import manage, sqlite_env
from tests.support.commands import refused as _refused
from tests.support.processes import free_port

REFUSED = "is quoted in USDT but this database's account counts its money in BTC"


def _manage(db: Path, *args: str):
    return manage(sqlite_env(db), *args)


def test_markets_in_another_quote_than_the_stored_account_are_refused(tmp_path):
    db = tmp_path / "btc.sqlite3"
    assert _manage(db, "migrate", "--noinput").returncode == 0
    sim = ("run_feed", "--source", "sim", "--steps", "1", "--backfill", "2", "--tick-seconds", "0.001")
    made = _manage(db, *sim, "--symbols", "ETH_BTC")  # a fresh database: its first market sets the account's quote
    assert made.returncode == 0, made.stdout + made.stderr

    assert "BTC_USDT " + REFUSED in _refused(_manage(db, *sim, "--symbols", "BTC_USDT"))
    assert "BTC_USDT " + REFUSED in _refused(_manage(db, "run_feed", "--source", "mexc", "--symbols", "BTC_USDT"))
    line = _refused(_manage(db, "serve", "--port", str(free_port())))
    assert "BTC_USDT, ETH_USDT, SOL_USDT, XRP_USDT " + REFUSED in line, line

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        assert connection.execute("SELECT DISTINCT symbol FROM marketdata_candle").fetchall() == [("ETH_BTC",)]
        assert connection.execute("SELECT symbol FROM marketdata_feedsymbol").fetchall() == [("ETH_BTC",)]
    again = _manage(db, *sim, "--symbols", "ETH_BTC")  # the account's own quote carries on
    assert again.returncode == 0, again.stdout + again.stderr
