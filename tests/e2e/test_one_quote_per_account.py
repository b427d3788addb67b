"""Markets of two quote currencies never share one account (issue 22's review, HIGH 1), through the real commands:
the backtest, a replay into a new database, `serve --symbols` and `run_feed --source sim --symbols` refuse a
BTC-quoted market beside a USDT-quoted one with one line and exit 2, storing nothing; a BTC-only backtest speaks BTC
(capital, P&L)."""

from __future__ import annotations

from pathlib import Path

from ground.amounts import mixed_quotes
from tests.support.commands import manage as _manage
from tests.support.commands import refused as _refused
from tests.support.commands import sqlite_env as _env

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, on the 5m grid
FIVE_MINUTES = 300_000
HEADER = "timestamp_ms,open,high,low,close,volume\n"
REFUSED = "ETH_BTC is quoted in BTC but BTC_USDT in USDT: one account counts its money in one quote currency"


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """ETH_BTC and BTC_USDT, 40 5m candles each, and signals buying ETH_BTC then selling it."""
    eth_btc, btc_usdt = tmp_path / "ETH_BTC-5m.csv", tmp_path / "BTC_USDT-5m.csv"
    rows = ((T0 + i * FIVE_MINUTES, 0.05 + i * 0.0001) for i in range(40))
    eth_btc.write_text(
        HEADER + "".join(f"{t},{c:.4f},{c + 0.0002:.4f},{c - 0.0002:.4f},{c:.4f},50000\n" for t, c in rows)
    )
    btc_usdt.write_text(HEADER + "".join(f"{T0 + i * FIVE_MINUTES},90000,90100,89900,90000,40\n" for i in range(40)))
    signals = tmp_path / "signals.csv"
    signals.write_text(f"{T0 + 2 * FIVE_MINUTES},ETH_BTC,BUY\n{T0 + 30 * FIVE_MINUTES},ETH_BTC,SELL\n")
    return eth_btc, btc_usdt, signals


def test_markets_of_two_quote_currencies_are_refused_everywhere(tmp_path):
    eth_btc, btc_usdt, signals = _files(tmp_path)
    strategy = f"signals_file:path={signals}"
    db = tmp_path / "fresh.sqlite3"
    env = _env(db, STRATEGY=strategy)
    files = (str(eth_btc), str(btc_usdt))

    line = _refused(
        _manage(env, "backtest", "--data", *files, "--strategy", strategy, "--capital", "1", "--no-progress")
    )
    assert REFUSED in line and line.endswith("Backtest each quote currency on its own"), line

    replay = ("run_feed", "--source", "replay", "--speed", "max", "--lockstep", "--no-progress", "--data", *files)
    line = _refused(_manage(env, *replay))
    assert REFUSED in line and "a database of its own" in line, line
    assert not db.exists() or db.stat().st_size == 0  # nothing created, nothing stored

    for command in (("serve", "--port", "8744"), ("run_feed", "--source", "sim", "--steps", "1")):
        line = _refused(_manage(env, *command, "--symbols", "BTC_USDT,ETH_BTC"))
        assert REFUSED in line and line.endswith("Give markets of one quote currency"), line
    assert not db.exists() or db.stat().st_size == 0


def test_a_btc_only_backtest_speaks_btc(tmp_path):
    eth_btc, _, signals = _files(tmp_path)
    done = _manage(
        _env(tmp_path / "unused.sqlite3"),
        *("backtest", "--data", str(eth_btc), "--strategy", f"signals_file:path={signals}", "--capital", "1"),
        "--no-progress",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "initial capital         1.00000000 BTC" in done.stdout, done.stdout
    assert "USDT" not in done.stdout, done.stdout
    assert "trades    1" in done.stdout and "P&L after fees +0.0" in done.stdout, done.stdout
    assert " BTC\n" in done.stdout, done.stdout


def test_the_rule_on_its_own():
    assert mixed_quotes(["ETH_BTC", "LTC_BTC"]) is None
    assert mixed_quotes(["BTC_USDT"]) is None
    assert mixed_quotes([]) is None
    said = mixed_quotes(["LTC_ETH", "ETH_BTC", "LTC_BTC"])
    assert said.startswith("LTC_ETH is quoted in ETH but ETH_BTC, LTC_BTC in BTC"), said  # no USDT: the first quote
    said = mixed_quotes(["BTC_USDT", "ETH_BTC", "SOL_USDT"])
    assert said.startswith("ETH_BTC is quoted in BTC but BTC_USDT, SOL_USDT in USDT"), said
