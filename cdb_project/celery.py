"""The Celery app. Configuration comes from Django settings (``CELERY_*``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")

app = Celery("cdb_project")
app.set_default()  # celery.current_app in every thread: the lower layers (bus, feeds, notify) find the app there
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
