"""Commands that run without Django's app registry: ``manage.py backtest`` uses settings and no installed app,
model, URL or admin, so populating the registry (every app's models and ``ready()``: auth, the admin, DRF's
filters, Prometheus, the bus, notifications — about a third of the command's start-up) is work for nothing.

``manage.py`` hands such a command here; a run that does need the registry (``backtest --save`` stores the run,
``backtest --html`` draws with the ORM's chart code) calls ``ensure_apps()`` first. In-process callers
(``call_command``, the tests) have the registry already and are not affected.
"""

from __future__ import annotations

from importlib import import_module

WITHOUT_APPS = {"backtest": "trading.management.commands.backtest"}  # subcommand → its module


def run(argv: list[str]) -> None:
    """``execute_from_command_line(argv)`` for a command of WITHOUT_APPS, less the app registry."""
    from django.conf import settings
    from django.core.management.base import CommandError, CommandParser, handle_default_options
    from django.utils.module_loading import import_string

    # --settings and --pythonpath first, as Django's ManagementUtility takes them: before the settings are read
    parser = CommandParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--settings")
    parser.add_argument("--pythonpath")
    parser.add_argument("args", nargs="*")
    try:
        handle_default_options(parser.parse_known_args(argv[2:])[0])
    except CommandError:
        pass  # the command's own parser reports it
    # The project's LOGGING alone. Django's own defaults (DEFAULT_LOGGING, put first by django.setup()) are for
    # requests and runserver, and their mail_admins handler imports the debug views, django.http and the ORM to
    # build its error reporter, for a command that serves no request.
    if settings.LOGGING_CONFIG and settings.LOGGING:
        import_string(settings.LOGGING_CONFIG)(settings.LOGGING)
    import_module(WITHOUT_APPS[argv[1]]).Command().run_from_argv(argv)


def ensure_apps() -> None:
    """The app registry, populated as ``django.setup()`` does, if it is not yet."""
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()
