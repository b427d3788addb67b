"""Input checks of `manage.py backtest` and `manage.py run_feed --source replay`, through the real commands (SQLite,
in-process tasks): a signals file without rows, one that is gone before the run ends, a capital or paper setting out
of range (each said in one line, none a traceback), and a stop-loss at tiny prices. Operator-command rows with a
column too many: tests/e2e/test_desk_parity.py (a bad operator-commands file)."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_desk_parity import DAY2, ROOT, _env, _flat, _write
from tests.support import processes

REPLAY = ("run_feed", "--source", "replay", "--speed", "max", "--lockstep", "--no-progress")
MINUTE = 60_000


def _run(env: dict[str, str], *args: str):
    return processes.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _both(tmp_path: Path, files: list[str], *extra: str, **env_extra: str):
    """The backtest's and the replay's answers for the same files and options (a database of the replay's own)."""
    env = _env(tmp_path / "live.sqlite3", **env_extra)
    backtest = _run(env, "backtest", "--data", *files, "--no-progress", "--json", str(tmp_path / "r.json"), *extra)
    replay = _run(env, *REPLAY, "--data", *files, *extra)
    return backtest, replay


def test_a_signals_file_with_only_a_header_is_said_and_a_0_byte_one_refused(tmp_path):
    files = [_flat(tmp_path / "AAA_USDT-1m.csv", 100, 3)]
    header_only = tmp_path / "header.csv"
    header_only.write_text("timestamp_ms,symbol,side\n")
    said = f"{header_only} has a header and no signal rows: no signal was decided"
    backtest, replay = _both(tmp_path, files, STRATEGY=f"signals_file:path={header_only}")
    assert backtest.returncode == 0 and f"WARNING: {said}" in backtest.stdout, backtest.stderr
    assert said in json.loads((tmp_path / "r.json").read_text())["summary"]["warnings"]
    assert replay.returncode == 0 and f"WARNING: {said}" in replay.stdout, replay.stderr
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    for result in _both(tmp_path, files, STRATEGY=f"signals_file:path={empty}"):
        assert result.returncode == 2, result.stderr
        assert f"signals_file: {empty} is empty: no header and no rows" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("INITIAL_CAPITAL", "1e30", "INITIAL_CAPITAL='1e30': must be a number in 0.00000001–1000000000000000"),
        ("POSITION_SIZE_PCT", "nan", "POSITION_SIZE_PCT='nan': must be a number in 0.001–1"),
        ("FEE_RATE", "-0.1", "FEE_RATE='-0.1': must be a number in 0–0.5"),
    ],
)
def test_a_capital_or_paper_setting_out_of_range_is_one_line_before_anything_runs(tmp_path, setting, value, said):
    files = [_flat(tmp_path / "AAA_USDT-1m.csv", 100, 3)]
    for result in _both(tmp_path, files, **{setting: value}):
        assert result.returncode == 2, result.stderr
        assert said in result.stderr and "Traceback" not in result.stderr
        assert "candles stored" not in result.stdout  # refused before the replay stored anything


def test_a_stop_at_tiny_prices_stays_below_the_entry_in_the_backtest(tmp_path):
    # Candles at 1e-11 (prices are kept to 12 places): the BUY fills at 1e-11 × (1 + PAPER_SLIPPAGE_PCT 0.0005) =
    # 1.0005e-11 → 1.0e-11; its stop 1e-11 × (1 − 0.02) = 9.8e-12 was rounded to nearest, 1.0e-11: the entry itself,
    # so the stop-loss sold at the next candle. Rounded down it is 9e-12: the position stays open. (Capital 100:
    # 10 % is 10 USDT = 10^12 AAA, above the minimum order value of 5 USDT.)
    price = "0.00000000001"
    rows = [f"{DAY2 + i * MINUTE},{price},{price},{price},{price},1000000000000000" for i in range(6)]
    files = [_write(tmp_path / "AAA_USDT-1m.csv", rows)]
    signals = tmp_path / "signals.csv"
    signals.write_text(f"{DAY2 + MINUTE},AAA_USDT,BUY\n")
    env = _env(tmp_path / "live.sqlite3", STRATEGY=f"signals_file:path={signals}")
    result = _run(
        env, "backtest", "--data", *files, "--no-progress", "--capital", "100", "--json", str(tmp_path / "r.json")
    )
    assert result.returncode == 0, result.stderr
    orders = json.loads((tmp_path / "r.json").read_text())["orders"]
    assert [(o["purpose"], o["status"]) for o in orders] == [("entry", "FILLED")]


def _stored_signals(database: Path) -> int:
    try:
        with sqlite3.connect(database) as connection:
            return connection.execute("SELECT count(*) FROM trading_signal").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def test_a_signals_file_gone_before_the_replay_ends_is_a_clear_error(tmp_path):
    # Paced at 60× (a second a candle): once the first signal is stored the file is removed; the later candles'
    # consumers cannot build the strategy (counted as failed) and the end's check of the rows says what happened.
    files = [_flat(tmp_path / "AAA_USDT-1m.csv", 100, 8)]
    signals = tmp_path / "signals.csv"
    signals.write_text(f"{DAY2},AAA_USDT,BUY\n")
    database = tmp_path / "live.sqlite3"
    env = _env(database, STRATEGY=f"signals_file:path={signals}")
    args = ["run_feed", "--source", "replay", "--speed", "60", "--no-progress", "--data", *files]
    replay = processes.start([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=-1, stderr=-1, text=True)
    deadline = time.monotonic() + 120
    while _stored_signals(database) == 0 and replay.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    signals.unlink()
    stdout, stderr = replay.communicate(timeout=120)
    assert replay.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"CommandError: signals_file: cannot read {signals}: No such file or directory"), last
    assert "during the replay: keep the signals file until it ends" in last


def test_a_signals_file_gone_before_the_backtest_ends_is_a_clear_error(tmp_path):
    # AAA has 150,000 candles; BBB's one candle is the last time, where its series builds its strategy and reads
    # the file again. The file is removed once the run's progress bar shows: a one-line error, exit 1.
    count = 150_000
    files = [_flat(tmp_path / "AAA_USDT-1m.csv", 100, count)]
    files.append(_write(tmp_path / "BBB_USDT-1m.csv", [f"{DAY2 + (count - 1) * MINUTE},5,5,5,5,1000"]))
    signals = tmp_path / "signals.csv"
    signals.write_text(f"{DAY2},AAA_USDT,BUY\n")
    env = _env(tmp_path / "live.sqlite3", STRATEGY=f"signals_file:path={signals}")
    backtest = processes.start(
        [sys.executable, "manage.py", "backtest", "--data", *files], cwd=ROOT, env=env, stdout=-1, stderr=-1
    )
    seen = b""
    while b"candle" not in seen and backtest.poll() is None:
        seen += backtest.stderr.read1(4096)
    signals.unlink()
    stdout, stderr = backtest.communicate(timeout=300)
    text = (seen + stderr).decode()
    assert backtest.returncode == 1, text
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"CommandError: signals_file: cannot read {signals}: No such file or directory"), last
    assert "during the run: keep the signals file until it ends" in last and "Traceback" not in text
