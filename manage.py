#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")
    if sys.argv[1:2] == ["serve"]:  # the web process, as cdb_project.asgi says for daphne: set before the settings
        os.environ.setdefault("CDB_PROCESS", "web")
    from cdb_project import standalone

    if sys.argv[1:2] and sys.argv[1] in standalone.WITHOUT_APPS:  # no app registry to populate
        standalone.run(sys.argv)
        return
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
