from django.apps import AppConfig


class CdbProjectConfig(AppConfig):
    """The project package is an app too: it owns the event bus and its RejectedEvent store."""

    name = "cdb_project"
    verbose_name = "Event bus"
