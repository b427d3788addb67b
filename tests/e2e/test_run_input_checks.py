"""Input checks of `manage.py backtest` and `manage.py run_feed --source replay`, through the real commands (SQLite,
in-process tasks): a signals file without rows, one that is gone before the run ends, operator-command rows with a
column too many, a capital or paper setting out of range (each said in one line, none a traceback), and a stop-loss
at tiny prices."""

from __future__ import annotations

import json
import sys
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


def test_operator_command_rows_with_a_column_too_many_are_refused_naming_the_line(tmp_path):
    files = [_flat(tmp_path / "AAA_USDT-1m.csv", 100, 3)]
    commands = tmp_path / "ops.csv"
    commands.write_text(f'{DAY2},halt,"a reason, with a comma"\n{DAY2 + MINUTE},release,go on,extra\n')
    for result in _both(tmp_path, files, "--operator-commands", str(commands)):
        assert result.returncode == 2, result.stderr
        assert f"{commands}: line 2: 4 columns, expected at most 3" in result.stderr
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
