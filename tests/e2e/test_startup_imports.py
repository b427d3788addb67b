"""A command imports only what it uses: ccxt (every exchange it knows, about a second), daphne and Twisted, and
Celery (150–180 ms: kombu, PyYAML, click) are not loaded by a backtest, its --help, or ``manage.py help``, nor
numpy and pyarrow where no candle file is read, nor the apps' admin modules (``risk.admin`` stands for them)
outside the admin, nor the ORM chart code that only ``backtest --html`` draws with; they are by the commands that
use them (a probe that could not see them would pass anything)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.paths import CANDLES

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("ccxt", "daphne", "twisted", "celery", "kombu", "numpy", "pyarrow", "risk.admin", "trading.chart_service")

# Runs one manage.py command in this interpreter, then prints which heavy modules it loaded as the last line.
PROBE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")
from django.core.management import execute_from_command_line
try:
    execute_from_command_line(["manage.py", *sys.argv[1:]])
except SystemExit as stop:
    if stop.code:
        raise
print(json.dumps(sorted(name for name in HEAVY if name in sys.modules)))
""".replace("HEAVY", repr(HEAVY))


def loaded_by(*args: str) -> list[str]:
    done = processes.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_help_and_backtest_help_load_nothing_heavy():
    assert loaded_by("help") == []
    assert loaded_by("backtest", "--help") == []


@pytest.mark.shared_data
def test_a_backtest_loads_numpy_for_its_candles_and_nothing_of_the_live_side(tmp_path):
    data = str(CANDLES / "ETH_BTC-5m.csv")
    assert loaded_by("backtest", "--data", data, "--no-progress", "--json", str(tmp_path / "r.json")) == ["numpy"]
    assert json.loads((tmp_path / "r.json").read_text())["candles"] > 5000


# The command as ``manage.py`` runs it (its own route for the commands of cdb_project.standalone.WITHOUT_APPS).
MANAGE_PROBE = """
import json, runpy, sys
sys.argv = ["manage.py", *sys.argv[1:]]
try:
    runpy.run_path("manage.py", run_name="__main__")
except SystemExit as stop:
    if stop.code:
        raise
from django.apps import apps
print(json.dumps({"apps_ready": apps.ready, "auth_models": "django.contrib.auth.models" in sys.modules}))
"""


def run_manage(*args: str, **environ: str) -> tuple[str, dict]:
    done = processes.run(
        [sys.executable, "-c", MANAGE_PROBE, *args],
        cwd=ROOT,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    *output, seen = done.stdout.strip().splitlines()
    return "\n".join(output), json.loads(seen)


@pytest.mark.shared_data
def test_manage_py_runs_a_backtest_without_the_app_registry_and_populates_it_to_save(tmp_path):
    """No app's models or ready() for a backtest that only reports; ``--save`` (the ORM) populates the registry."""
    data = str(CANDLES / "ETH_BTC-5m.csv")
    output, seen = run_manage("backtest", "--data", data, "--no-progress", "--json", str(tmp_path / "r.json"))
    assert seen == {"apps_ready": False, "auth_models": False}
    assert json.loads((tmp_path / "r.json").read_text())["candles"] > 5000
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    run_manage("migrate", "-v", "0", **database)
    output, seen = run_manage("backtest", "--data", data, "--no-progress", "--save", **database)
    assert seen == {"apps_ready": True, "auth_models": True}
    assert "saved as backtest run #1" in output


def test_the_commands_that_need_them_still_load_them():
    assert "daphne" in loaded_by("runserver", "--help")
    assert "twisted" in loaded_by("runserver", "--help")


def test_the_admin_modules_load_with_the_urls_and_for_the_admin_check():
    """Each seen on its own: the admin-tagged checks (autodiscover before ``check_admin_app``), and the URL checks
    (they import ``cdb_project/urls.py``, which mounts the admin site)."""
    assert "risk.admin" in loaded_by("check", "--tag", "admin")
    assert "risk.admin" in loaded_by("check", "--tag", "urls")


# A process's first ``import celery`` (here a tasks module's ``shared_task``) creates the configured app.
CELERY_PROBE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")
import django
django.setup()
loaded_at_setup = "celery" in sys.modules
from trading.tasks import on_market_data
from celery import current_app
from celery.signals import before_task_publish, setup_logging, task_prerun
print(json.dumps({
    "loaded_at_setup": loaded_at_setup,
    "app": current_app.main,
    "broker": current_app.conf.broker_url,
    "task_app": on_market_data.app.main,
    "daily_report": str(current_app.conf.beat_schedule["notify-daily-report"]["schedule"]),
    "receivers": [len(signal.receivers) for signal in (before_task_publish, setup_logging, task_prerun)],
}))
"""


def run_with_broker(*command: str) -> str:
    """A command's output, run with a broker URL of its own (nothing is sent to it)."""
    done = processes.run(
        list(command),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": "redis://127.0.0.1:6379/7"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_celery_is_created_by_its_first_use_as_the_configured_app():
    """Loaded on first use, Celery is the configured app all the same: the settings' broker (not Celery's default,
    which nobody reads), the beat's crontab, the bus's and the operations' signal handlers."""
    seen = json.loads(run_with_broker(sys.executable, "-c", CELERY_PROBE).strip().splitlines()[-1])
    assert seen["loaded_at_setup"] is False
    assert (seen["app"], seen["task_app"], seen["broker"]) == ("cdb_project", "cdb_project", "redis://127.0.0.1:6379/7")
    assert seen["daily_report"].startswith("<crontab: 0 0 * * *")
    assert all(seen["receivers"]), seen["receivers"]


def test_the_celery_command_finds_the_app():
    """``celery -A cdb_project`` (the workers' and the beat's command) imports Celery before the project."""
    assert "transport:redis" in run_with_broker(
        str(Path(sys.executable).with_name("celery")), "-A", "cdb_project", "report"
    )
