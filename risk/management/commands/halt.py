import getpass

from django.core.management.base import BaseCommand, CommandError

from risk.state import halt


class Command(BaseCommand):
    help = "HALT trading now: no further order executes anywhere until a person releases it."

    def add_arguments(self, parser):
        parser.add_argument("--reason", required=True, help="why (stored in the audit log)")
        parser.add_argument("--actor", default=None, help="who (default: the OS user)")

    def handle(self, *args, **options):
        actor = options["actor"] or f"cli:{getpass.getuser()}"
        try:
            state = halt(options["reason"], actor)
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        self.stdout.write(self.style.WARNING(f"Trading {state.state}: {state.reason} (by {state.changed_by})"))
