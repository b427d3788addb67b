import getpass

from django.core.management.base import BaseCommand, CommandError

from risk.state import outcome, release


class Command(BaseCommand):
    help = "Release a HALT (or a pause): trading is ACTIVE again."

    def add_arguments(self, parser):
        parser.add_argument("--reason", default="", help="why (stored in the audit log)")
        parser.add_argument("--actor", default=None, help="who (default: the OS user)")

    def handle(self, *args, **options):
        try:
            state = release(options["reason"], options["actor"] or f"cli:{getpass.getuser()}")
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        self.stdout.write((self.style.WARNING if state.already else self.style.SUCCESS)(outcome(state)))
