"""The Celery app. Configuration comes from Django settings (``CELERY_*``); created by the first ``import celery``
of a process (``cdb_project/celery_on_use.py``), with the project's Celery signal handlers."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")

app = Celery("cdb_project")
app.set_default()  # celery.current_app in every thread: the lower layers (bus, feeds, notify) find the app there
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def beat_schedule(entries: dict[str, dict]) -> dict[str, dict]:
    """``CELERY_BEAT_SCHEDULE`` with each ``{"crontab": {fields}}`` schedule made a ``crontab``: settings.py names
    them as data, as importing Celery there would load it in every process."""
    return {
        name: {**entry, "schedule": crontab(**entry["schedule"]["crontab"])}
        if isinstance(entry["schedule"], dict)
        else entry
        for name, entry in entries.items()
    }


@app.on_after_configure.connect
def _crontabs(sender: Celery, **kwargs) -> None:
    sender.conf.beat_schedule = beat_schedule(sender.conf.beat_schedule)


@app.on_after_finalize.connect
def _register_notify_tasks(sender: Celery, **kwargs) -> None:
    """``notify.service`` sends its tasks by name (notify.tasks imports it): registered as the app is finalized,
    by the first task lookup or publish of the process (a worker imports every app's tasks module anyway)."""
    from django.apps import apps

    if apps.ready:
        import notify.tasks  # noqa: F401


def _connect_signals() -> None:
    from cdb_project import ops
    from ground import bus

    ops.connect_celery_signals()
    bus.connect_celery_signals()


_connect_signals()
