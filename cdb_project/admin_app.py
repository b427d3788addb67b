"""``django.contrib.admin`` with every app's ``admin.py`` imported where the admin is used, not at ``django.setup()``.

The admin modules pull in forms, the risk state service and the notification rules (about 60 ms of every
command's start), which a backtest, ``--help`` or a worker never use. ``cdb_project/urls.py`` calls
``autodiscover()`` before it mounts the site, and so does the admin's system check before it checks the
registered ModelAdmins (Django runs the checks in no fixed order, so that check cannot count on the URLs).
"""

from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks


class AdminConfig(SimpleAdminConfig):
    def ready(self) -> None:
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_discovered_admin, checks.Tags.admin)


def check_discovered_admin(app_configs, **kwargs):
    """Django's ``check_admin_app`` over every app's ModelAdmins (autodiscover imports each admin.py once)."""
    from django.contrib.admin import autodiscover

    autodiscover()
    return check_admin_app(app_configs, **kwargs)
