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
from urllib.parse import quote

import pytest

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


@pytest.mark.postgres
def test_a_postgresql_database_named_with_a_slash_gets_a_file_of_its_server_and_name(service_env, tmp_path):
    """Review22b LOW E: a database named ``a/b`` failed to write ``.admin_password-a/b``; two servers' databases of
    one name shared one file. The file is named by host, port and name, each percent-quoted."""
    import psycopg2

    base = service_env["DATABASE_URL"]
    name = base.rsplit("/", 1)[1] + "/slash"
    server = psycopg2.connect(base.rsplit("/", 1)[0] + "/postgres")
    server.autocommit = True
    with server.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        checkout = _checkout(tmp_path)
        env = {**service_env, "REDIS_URL": "", "DATABASE_URL": base.rsplit("/", 1)[0] + "/" + quote(name, safe="")}
        env.pop("GENERATED_ADMIN_PASSWORD_FILE", None)
        env = {k: v for k, v in env.items() if not k.startswith("CDB_")}
        for args in (("migrate", "--noinput"), ("ensure_admin",)):
            done = processes.run(
                [sys.executable, "manage.py", *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stdout + done.stderr
        own = checkout / f".admin_password-127.0.0.1-5432-{quote(name, safe='')}"
        assert f"its generated password is in {own} " in done.stdout, done.stdout
        assert own.stat().st_mode & 0o777 == 0o600 and not (checkout / ".admin_password").exists()
    finally:
        with server.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.close()
