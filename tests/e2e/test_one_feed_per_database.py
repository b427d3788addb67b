"""One feed per database (review22b HIGH B, MED C, MED D), through the real commands on SQLite and PostgreSQL.

While a `run_feed` feeds a database, a second `run_feed` and a `serve` running the simulated market on it are refused
with one line naming the feed's process, exit 2; once it has stopped, both are accepted. On SQLite the server's lock
is the database file's own, so a second `serve` started with another TMPDIR is refused too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.commands import manage as _manage
from tests.support.commands import refused as _refused
from tests.support.commands import sqlite_env as _sqlite_env
from tests.support.processes import _spawn, _wait_for, free_port

FEED = ("run_feed", "--source", "sim", "--symbols", "BTC_USDT", "--backfill", "2", "--tick-seconds", "1")
ONE_STEP = ("run_feed", "--source", "sim", "--symbols", "BTC_USDT", "--backfill", "1", "--steps", "1")


def _serve(env: dict[str, str], tmp_path: Path, name: str) -> processes.Process:
    server = _spawn(name, [sys.executable, "manage.py", "serve", "--port", str(free_port())], env, tmp_path)
    _wait_for(server, lambda: "serving at" in server.output(), 60, "the serving line")
    return server


def _one_feed(env: dict[str, str], tmp_path: Path, name: str) -> None:
    """A running feed refuses a second feed and a serving market; both are accepted once it has stopped."""
    feed = _spawn("feed", [sys.executable, "manage.py", *FEED], env, tmp_path)
    try:
        _wait_for(feed, lambda: "backfilled" in feed.output(), 60, "the feed's backfill")
        holder = f"`manage.py run_feed --source sim` (pid {feed.popen.pid}) feeds {name}"
        line = _refused(_manage(env, *ONE_STEP))
        assert holder + ": a second feed would take over its symbols" in line, line
        line = _refused(_manage(env, "serve", "--port", str(free_port())))
        assert holder + " already: this server's simulated market would take over" in line, line
    finally:
        feed.stop()
    done = _manage(env, *ONE_STEP)
    assert done.returncode == 0, done.stdout + done.stderr
    server = _serve(env, tmp_path, "serve")
    try:
        line = _refused(_manage(env, *ONE_STEP))
        assert f"`manage.py serve` (pid {server.popen.pid}) runs its simulated market on {name}" in line, line
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-5000:]


def test_one_feed_per_sqlite_file_and_its_server_lock_beside_it(tmp_path):
    db = tmp_path / "db.sqlite3"
    env = _sqlite_env(db)
    assert _manage(env, "migrate", "--noinput").returncode == 0
    _one_feed(env, tmp_path, str(db))

    first, second = tmp_path / "tmp-a", tmp_path / "tmp-b"
    first.mkdir(), second.mkdir()
    server = _serve(_sqlite_env(db, TMPDIR=str(first)), tmp_path, "serve-a")
    try:
        assert not any(second.iterdir()) and not any(first.iterdir())  # nothing of the lock in either TMPDIR
        line = _refused(_manage(_sqlite_env(db, TMPDIR=str(second)), "serve", "--port", str(free_port())))
        assert f"another `manage.py serve` (pid {server.popen.pid}) is serving {db} already" in line, line
    finally:
        server.stop()


@pytest.mark.postgres
def test_one_feed_per_postgresql_database(service_env, tmp_path):
    env = {**service_env, "REDIS_URL": ""}  # embedded: `serve` runs the simulated market
    name = service_env["DATABASE_URL"].rsplit("/", 1)[1]
    _one_feed(env, tmp_path, name)
