from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    verbose_name = "Notifications"

    def ready(self):
        from django.conf import settings
        from django.db.models.signals import post_delete, post_migrate, post_save

        from ground.logging import register_secrets

        from . import hooks, rules  # the tasks module with Celery, on first use (cdb_project/celery.py)

        for raw in rules.split_urls(settings.NOTIFY_URLS):  # masked in every log line from the start
            from . import sender  # imports Apprise: only where NOTIFY_URLS is set

            try:
                register_secrets(sender.describe(rules.parse_destination(raw).url).secrets)
            except ValueError:
                continue
        post_save.connect(hooks.forget, sender="notify.Destination", dispatch_uid="notify_forget_saved")
        post_delete.connect(hooks.forget, sender="notify.Destination", dispatch_uid="notify_forget_deleted")
        post_migrate.connect(_seed, sender=self, dispatch_uid="notify_seed_from_env")


def _seed(**kwargs) -> None:
    """After every ``migrate``: NOTIFY_URLS entries not stored yet become destinations."""
    from .service import seed_from_env

    seed_from_env()
