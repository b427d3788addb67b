import getpass

from django.core.management.base import BaseCommand, CommandError

from risk.desk import OPERATOR_CLOSE
from risk.state import halt, outcome


class Command(BaseCommand):
    help = "HALT trading now: no further order executes anywhere until a person releases it."

    def add_arguments(self, parser):
        parser.add_argument("--reason", required=True, help="why (stored in the audit log)")
        parser.add_argument("--actor", default=None, help="who (default: the OS user)")
        parser.add_argument(
            "--close-positions",
            action="store_true",
            help="also close every position (at the next price of each symbol) until the account is flat",
        )

    def handle(self, *args, **options):
        actor = options["actor"] or f"cli:{getpass.getuser()}"
        try:
            state = halt(options["reason"], actor, close_positions=options["close_positions"])
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        self.stdout.write(self.style.WARNING(outcome(state)))
        if state.pause_layer == OPERATOR_CLOSE:
            self.stdout.write("Every position is closed at the next price of its symbol, until the account is flat.")
