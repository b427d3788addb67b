#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

# A command whose reader went away (``manage.py risk_status | head -1``) ends as a process a SIGPIPE ends, quietly:
# no BrokenPipeError traceback, with the shell's code for it (128 + SIGPIPE).
CLOSED_PIPE = 141


def main() -> None:
    try:
        run()
        sys.stdout.flush()  # here, not at the interpreter's exit, where a closed pipe is an "Exception ignored" line
    except BrokenPipeError:
        # Python flushes stdout once more on exit: point it at /dev/null so that flush has nowhere to fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(CLOSED_PIPE)


def run() -> None:
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
