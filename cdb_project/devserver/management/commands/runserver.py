"""daphne's ``runserver``: importing it installs Twisted's asyncio reactor, so nothing else may import it."""

from daphne.management.commands.runserver import Command  # noqa: F401
