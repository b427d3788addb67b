"""A replay never wrecks the account of the database it is stored in (issue 22's review), through the real commands.

`make run`'s database — migrated, a few simulated candles, an open BTC_USDT position — then:
* the README's old line, a replay of ETH_BTC (BTC-quoted, 2018) into it, is refused with one line and exit 2, naming
  a command that works, and changes nothing;
* a replay of BTC_USDT candles older than the stored market data is refused likewise (it would value the position
  with no price at that older time and halt on the drawdown);
* the README's lines, pasted as they are: the backtest, then the replay into a database of its own (created and
  migrated by the command), which trades BTC with 1 BTC and leaves `make run`'s database as it was.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.paths import SHARED_DATA
from tests.support.processes import ROOT

MINUTE = 60_000


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("PYTEST")}
    env.update(DATABASE_URL=f"sqlite:///{db}", PYTHONUNBUFFERED="1", **extra)
    return env


def _manage(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return processes.run(
        [sys.executable, "manage.py", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def _make_run_database(tmp_path: Path) -> Path:
    """migrate, then the simulated market (as `make run` serves it) with a strategy that buys BTC_USDT at every
    minute around now: its candles and an open BTC_USDT position."""
    db = tmp_path / "db.sqlite3"
    now = int(time.time() * 1000) // MINUTE * MINUTE
    signals = tmp_path / "buy.csv"
    signals.write_text("".join(f"{now + i * MINUTE},BTC_USDT,BUY\n" for i in range(-120, 60)))
    env = _env(db)
    assert _manage(env, "migrate", "--noinput").returncode == 0
    sim = _manage(
        _env(db, STRATEGY=f"signals_file:path={signals}"),
        *("run_feed", "--source", "sim", "--backfill", "20", "--steps", "3", "--tick-seconds", "0.01"),
    )
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert _query(db, "SELECT symbol FROM execution_position WHERE quantity > 0") == [("BTC_USDT",)]
    return db


def _fingerprint(db: Path) -> tuple:
    return (
        _query(db, "SELECT symbol, interval, COUNT(*), MAX(timestamp) FROM marketdata_candle GROUP BY 1, 2"),
        _query(db, "SELECT symbol FROM marketdata_feedsymbol ORDER BY 1"),
        _query(db, "SELECT state FROM risk_tradingstate"),
        _query(db, "SELECT COUNT(*) FROM execution_order"),
        _query(db, "SELECT COUNT(*) FROM risk_riskevent"),
        _query(db, "SELECT cash FROM execution_portfolio"),
    )


def _refused(done: subprocess.CompletedProcess) -> str:
    """A refusal: exit 2, one line on stderr, no traceback; the line."""
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def _readme_line(needle: str) -> str:
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if needle in line)
    return line.split("  #")[0].strip()


def _checkout_beside_shared(tmp_path: Path, rows: int) -> Path:
    """A directory that looks like the checkout (its entries linked) with ../shared beside it: the README's
    commands run there as pasted, and what they create in it (replay.sqlite3) stays in the test's directory. Its
    ETH_BTC-5m.csv is the shared file's first ``rows`` candles: the whole file (5,760) takes minutes to replay."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("db.sqlite3", "replay.sqlite3"):
            (checkout / entry.name).symlink_to(entry)
    candles = tmp_path / "shared" / "data" / "candles"
    candles.mkdir(parents=True)
    lines = (SHARED_DATA / "candles" / "ETH_BTC-5m.csv").read_text().splitlines(keepends=True)
    (candles / "ETH_BTC-5m.csv").write_text("".join(lines[: rows + 1]))  # with its header
    return checkout


@pytest.mark.shared_data
def test_a_replay_that_would_wreck_the_account_is_refused_and_the_readme_commands_work(tmp_path):
    db = _make_run_database(tmp_path)
    env = _env(db)
    before = _fingerprint(db)

    # The README's old line: BTC-quoted candles into the USDT account.
    eth_btc = str(SHARED_DATA / "candles" / "ETH_BTC-5m.csv")
    line = _refused(_manage(env, "run_feed", "--source", "replay", "--data", eth_btc))
    assert "ETH_BTC is quoted in BTC but this database's account counts its money in USDT" in line, line
    assert "DATABASE_URL=sqlite:///replay.sqlite3 INITIAL_CAPITAL=1 .venv/bin/python manage.py run_feed" in line
    assert line.endswith(f"--source replay --data {eth_btc}"), line
    assert _fingerprint(db) == before

    # Candles of the position's own symbol, older than what is stored (2024): they would value it at that time.
    older = tmp_path / "BTC_USDT-1m.csv"
    start = 1_730_443_200_000
    older.write_text("".join(f"{start + i * MINUTE},60000,60010,59990,60005,3\n" for i in range(30)))
    line = _refused(_manage(env, "run_feed", "--source", "replay", "--data", str(older), "--no-progress"))
    assert re.search(
        r"this database holds BTC_USDT and market data up to \d{4}-\d\d-\d\dT[\d:]+Z: a replay from "
        r"2024-11-01T06:41:00Z would value them at that older time",
        line,
    ), line
    assert "DATABASE_URL=sqlite:///replay.sqlite3 .venv/bin/python manage.py run_feed" in line
    assert _fingerprint(db) == before

    # The README's two lines, pasted as they are, after `make run`.
    checkout = _checkout_beside_shared(tmp_path, rows=300)
    for needle in ("manage.py backtest --data", "manage.py run_feed --source replay"):
        command = _readme_line(needle)
        done = processes.run(
            ["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
    replay_db = checkout / "replay.sqlite3"
    assert "creating its tables" in done.stdout and "replayed 1 file: 300 new candles" in done.stdout, done.stdout
    assert "errors:          0" in done.stdout, done.stdout
    assert _query(replay_db, "SELECT initial_capital FROM execution_portfolio") == [(1,)]
    assert _query(replay_db, "SELECT COUNT(*) FROM execution_order")[0][0] > 0  # it traded, in BTC
    assert _query(replay_db, "SELECT DISTINCT symbol FROM execution_order") == [("ETH_BTC",)]
    assert _fingerprint(db) == before  # `make run`'s database as it was


def test_the_rule_on_its_own():
    from execution.replay_fit import StoredAccount, refusal

    new_database = StoredAccount(None, (), None)
    assert refusal(new_database, ["ETH_BTC"], 1_000) is None  # its quote is the replay's
    usdt = StoredAccount("USDT", ("SOL_USDT",), 5_000)
    assert "ETH_BTC is quoted in BTC" in refusal(usdt, ["ETH_BTC", "SOL_USDT"], 6_000)
    assert refusal(usdt, ["SOL_USDT"], 6_000) is None  # after the stored data: the clock goes on
    assert refusal(usdt, ["SOL_USDT"], 5_000) is None
    assert "would value them at that older time" in refusal(usdt, ["SOL_USDT"], 4_999)
    assert refusal(StoredAccount("USDT", (), None), ["SOL_USDT"], 4_999) is None  # nothing held, nothing to value


T0 = 1_700_002_800_000
HEADER = "timestamp_ms,open,high,low,close,volume\n"
REPLAY = ("run_feed", "--source", "replay", "--speed", "max", "--lockstep", "--no-progress")


def _aaa_replayed_and_held(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """A database that replayed 5 AAA_USDT 1m candles from T0 and bought AAA: (database, its env, AAA's file)."""
    aaa = tmp_path / "AAA_USDT-1m.csv"
    aaa.write_text(HEADER + "".join(f"{T0 + i * MINUTE},100,100,100,100,1000000\n" for i in range(5)))
    signals = tmp_path / "sig.csv"
    signals.write_text(f"{T0 + MINUTE},AAA_USDT,BUY\n")
    db = tmp_path / "db.sqlite3"
    env = _env(db, STRATEGY=f"signals_file:path={signals}", SYMBOL_WHITELIST="")
    assert _manage(env, "migrate", "--noinput").returncode == 0
    first = _manage(env, *REPLAY, "--data", str(aaa))
    assert first.returncode == 0, first.stdout + first.stderr
    assert _query(db, "SELECT symbol FROM execution_position WHERE quantity > 0") == [("AAA_USDT",)]
    return db, env, aaa


def test_listing_the_stored_file_again_does_not_let_an_older_one_in(tmp_path):
    # AAA replayed and bought (held, its candles stored up to 00:05 known). A second replay lists AAA's file again
    # (nothing new in it) with CCC's, an hour older: CCC's candles would be the new ones, decided at that older
    # time with AAA held. Refused as CCC alone would be; the same files with a newer CCC fit.
    db, env, aaa = _aaa_replayed_and_held(tmp_path)
    replay = (*REPLAY, "--data")
    before = _fingerprint(db)
    older = tmp_path / "old" / "CCC_USDT-1m.csv"
    older.parent.mkdir()
    older.write_text(HEADER + "".join(f"{T0 - 3_600_000 + i * MINUTE},10,10,10,10,1000000\n" for i in range(5)))
    line = _refused(_manage(env, *replay, str(aaa), str(older)))
    assert "this database holds AAA_USDT" in line and "a replay from 2023-11-14" in line, line
    assert _fingerprint(db) == before
    newer = tmp_path / "CCC_USDT-1m.csv"
    newer.write_text(HEADER + "".join(f"{T0 + (5 + i) * MINUTE},10,10,10,10,1000000\n" for i in range(5)))
    fits = _manage(env, *replay, str(aaa), str(newer))
    assert fits.returncode == 0, fits.stdout + fits.stderr


def test_a_close_of_a_symbol_outside_the_replay_expires_at_its_end(tmp_path):
    # AAA replayed and bought (held). A replay of BBB only, with a person's halt_close: AAA's close is decided at
    # AAA's last price and waits for AAA's next candle, which this replay never brings. When it ends, every order
    # still waiting ends too: the close is cancelled (REJECTED, a risk exit is decided again when AAA has a price),
    # none stays PENDING.
    db, env, _ = _aaa_replayed_and_held(tmp_path)
    bbb = tmp_path / "BBB_USDT-1m.csv"
    bbb.write_text(HEADER + "".join(f"{T0 + (10 + i) * MINUTE},50,50,50,50,1000000\n" for i in range(5)))
    commands = tmp_path / "ops.csv"
    commands.write_text(f"timestamp_ms,command,reason\n{T0 + 12 * MINUTE},halt_close,flat please\n")
    second = _manage(env, *REPLAY, "--operator-commands", str(commands), "--data", str(bbb))
    assert second.returncode == 0, second.stdout + second.stderr
    closes = _query(db, "SELECT symbol, status FROM execution_order WHERE purpose = 'operator_close'")
    assert closes == [("AAA_USDT", "REJECTED")], closes
    assert _query(db, "SELECT COUNT(*) FROM execution_order WHERE status = 'PENDING'") == [(0,)]


def test_a_replay_of_times_in_seconds_is_refused(tmp_path):
    # Every row's time is in seconds: off the 1m grid, each refused and counted; with no valid candle left the replay
    # exits 2 naming the time.
    data = tmp_path / "AAA_USDT-1m.csv"
    data.write_text("timestamp_ms,open,high,low,close,volume\n1700002800,1,1,1,1,1\n1700002860,1,1,1,1,1\n")
    env = _env(tmp_path / "db.sqlite3")
    done = _manage(env, "run_feed", "--source", "replay", "--speed", "max", "--no-progress", "--data", str(data))
    assert "timestamp_off_interval_grid: 2" in done.stdout, done.stdout
    line = _refused(done)
    assert line.endswith("AAA_USDT-1m.csv: 1700002800 is not a 1m open time in epoch ms: a time in seconds?)"), line
