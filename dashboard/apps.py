from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The roof's page and its websocket: the snapshot, the views, the consumer and the session guard."""

    name = "dashboard"

    def ready(self) -> None:
        from .session_guard import connect_signals

        connect_signals()
