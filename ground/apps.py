from django.apps import AppConfig


class GroundConfig(AppConfig):
    """The ground floor every layer builds on: the event bus and its RejectedEvent store, database helpers,
    logging, amounts and times. Its label stays ``cdb_project`` (the app this code came from): the table, the
    migrations and the admin URLs keep their names."""

    name = "ground"
    label = "cdb_project"
    verbose_name = "Event bus"
