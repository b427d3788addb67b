import getpass

from django.core.management.base import BaseCommand

from risk.state import release


class Command(BaseCommand):
    help = "Release a HALT (or a pause): trading is ACTIVE again."

    def add_arguments(self, parser):
        parser.add_argument("--reason", default="", help="why (stored in the audit log)")
        parser.add_argument("--actor", default=None, help="who (default: the OS user)")

    def handle(self, *args, **options):
        state = release(options["reason"], options["actor"] or f"cli:{getpass.getuser()}")
        self.stdout.write(self.style.SUCCESS(f"Trading {state.state}: {state.reason} (by {state.changed_by})"))
