"""`ensure_admin` keeps one generated password file per database (issue 22's review, MED 6), through the real
command in a copy of the checkout (its `.admin_password` is the test's): `make run`'s admin on the checkout's own
db.sqlite3 gets `.admin_password`; an admin created on another database (a replay's SQLite file) gets a file beside
that database and never overwrites `make run`'s, whose password still signs in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import processes
from tests.support.processes import ROOT

LEFT_OUT = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "artifacts",
    "*.sqlite3",
    ".admin_password*",
    ".secret_key",
    "__pycache__",
    ".*cache",
)


def _checkout(tmp_path: Path) -> Path:
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT, copy, ignore=LEFT_OUT)
    return copy


def _manage(checkout: Path, database: Path | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "PYTEST", "CDB_"))}
    env.pop("GENERATED_ADMIN_PASSWORD_FILE", None)
    if database is not None:
        env["DATABASE_URL"] = f"sqlite:///{database}"
    done = processes.run(
        [sys.executable, "manage.py", *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_an_admin_on_another_database_keeps_make_runs_password(tmp_path):
    checkout = _checkout(tmp_path)
    make_run = checkout / ".admin_password"
    _manage(checkout, None, "migrate", "--noinput")
    first = _manage(checkout, None, "ensure_admin")  # `make run`
    assert f"its generated password is in {make_run}" in first.stdout, first.stdout
    password = make_run.read_text().strip()

    replay = tmp_path / "replay.sqlite3"
    _manage(checkout, replay, "migrate", "--noinput")
    other = _manage(checkout, replay, "ensure_admin")
    own = tmp_path / "replay.sqlite3.admin_password"
    assert f"its generated password is in {own} " in other.stdout, other.stdout
    assert own.stat().st_mode & 0o777 == 0o600 and own.read_text().strip() != password

    assert make_run.read_text().strip() == password  # not overwritten
    again = _manage(checkout, None, "ensure_admin")  # the next `make run`
    assert f"Its password is still the generated one in {make_run}" in again.stdout, again.stdout
    assert "STALE" not in again.stdout
    replay_again = _manage(checkout, replay, "ensure_admin")
    assert f"Its password is still the generated one in {own}" in replay_again.stdout, replay_again.stdout
