"""Commands given a bad path, symbol, number or port stop with one line and exit code 2, never a traceback.

Each ran into a traceback (exit 1) after doing its work, or, for ``serve``, exited 0 after failing to listen.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.paths import CANDLES
from tests.support.processes import ROOT

ONE_FILE = str(CANDLES / "ETH_BTC-5m.csv")
needs_candles = pytest.mark.shared_data


def _manage(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess:
    """The command as an operator runs it, on a throw-away SQLite database, embedded."""
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "DEBUG": "true", **environ}
    return processes.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def _one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line and not line.startswith('{"timestamp"')]
    assert len(lines) == 1 and lines[0].startswith("CommandError: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@needs_candles
@pytest.mark.parametrize(
    ("option", "path", "why"),
    [
        ("--json", "/nonexistent/dir/x.json", "no such directory"),
        ("--html", "/nonexistent/dir/x.html", "no such directory"),
        ("--html", "/proc/x.html", "No such file or directory"),  # the directory is there; writing fails
        ("--json", "/proc", "Is a directory"),
    ],
)
def test_backtest_report_to_a_path_it_cannot_write(tmp_path, option, path, why):
    _one_line_error(_manage(tmp_path, "backtest", "--no-progress", "--data", ONE_FILE, option, path), option, why)


def test_run_feed_and_serve_refuse_a_symbol_that_is_not_one(tmp_path):
    _one_line_error(_manage(tmp_path, "run_feed", "--source", "sim", "--symbols", "NOT A SYMBOL"), "'NOT A SYMBOL'")
    _one_line_error(_manage(tmp_path, "serve", "--feed", "none", "--symbols", "BTC_USDT,bad"), "'BAD'")


def test_download_candles_to_a_directory_it_cannot_make(tmp_path):
    done = _manage(tmp_path, "download_candles", "--out", "/proc/x", "--symbols", "BTC_USDT", "--since", "2024-01-01")
    _one_line_error(done, "--out /proc/x")


def test_reconcile_orders_refuses_an_age_no_date_can_subtract(tmp_path):
    _one_line_error(_manage(tmp_path, "reconcile_orders", "--older-than", "99999999999999999999"), "--older-than")


def test_serve_exits_2_when_it_cannot_listen(tmp_path):
    _one_line_error(_manage(tmp_path, "serve", "--feed", "none", "--port", "99999"), "--port 99999")
    assert _manage(tmp_path, "migrate", "--noinput").returncode == 0  # else serve refuses the database first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        _one_line_error(_manage(tmp_path, "serve", "--feed", "none", "--port", port), f"127.0.0.1:{port}")


@pytest.mark.parametrize("port", ["abc", "8792x", "1.5", "80_00", "８０００"])
def test_serve_refuses_a_port_that_is_not_a_number(tmp_path, port):
    """``make run PORT=abc`` exports PORT: it was a ValueError traceback from building the parser."""
    _one_line_error(_manage(tmp_path, "serve", "--feed", "none", PORT=port), f"--port {port}: must be 1–65535")
    _one_line_error(_manage(tmp_path, "serve", "--feed", "none", "--port", port), f"--port {port}: must be 1–65535")


RULE = "is not a number in ASCII digits 0-9 with at most one '.' point"


@pytest.mark.parametrize(
    ("args", "argument", "said"),
    [
        (
            ("run_feed", "--source", "sim", "--backfill", "99999999999", "--steps", "0", "--no-publish"),
            "--backfill",
            "",
        ),
        (("run_feed", "--source", "sim", "--tick-seconds", "nan", "--steps", "1"), "--tick-seconds", RULE),
        (("serve", "--backfill", "-1"), "--backfill", ""),
        # one rule for a typed number (ground.numbers): int() and float() would read these as 10, 100 and 1000
        (("run_feed", "--source", "sim", "--backfill", "1_0", "--steps", "0", "--no-publish"), "--backfill", RULE),
        (("run_feed", "--source", "sim", "--steps", "١٠٠", "--no-publish"), "--steps", RULE),
        (("run_feed", "--source", "replay", "--speed", "1e3", "--data", ONE_FILE), "--speed", RULE),
    ],
)
def test_feed_numbers_it_cannot_run_with_are_usage_errors(tmp_path, args, argument, said):
    done = _manage(tmp_path, *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"argument {argument}: invalid" in done.stderr
    assert said in done.stderr, done.stderr


def test_a_command_whose_reader_went_away_exits_quietly(tmp_path):
    """``manage.py risk_status | head -1``: the reader closes the pipe, the command's next write fails. It ends as a
    process a SIGPIPE ends (141), without a BrokenPipeError traceback, whatever the command."""
    assert _manage(tmp_path, "migrate", "--noinput").returncode == 0
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "DEBUG": "true"}
    for args in (("risk_status",), ("risk_status", "--json"), ("help",)):
        read, write = os.pipe()
        os.close(read)  # gone before the command writes its first line
        try:
            done = processes.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
                stdout=write,
                stderr=subprocess.PIPE,
                timeout=180,
            )
        finally:
            os.close(write)
        stderr = done.stderr.decode()
        assert done.returncode == 141 and "Traceback" not in stderr and "BrokenPipe" not in stderr, (args, stderr)
