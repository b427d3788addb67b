from django.core.management.base import BaseCommand, CommandError

from execution.reconcile import reconcile_pending

MAX_OLDER_THAN = 10 * 365 * 86_400  # ten years: far beyond any order, and well within what a date can subtract


class Command(BaseCommand):
    help = "Settle PENDING orders older than a timeout (left by a crash); each is executed at most once."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None, help="seconds (default PENDING_ORDER_TIMEOUT_SEC)")

    def handle(self, *args, **options):
        if options["older_than"] is not None and not 0 <= options["older_than"] <= MAX_OLDER_THAN:
            raise CommandError(f"--older-than must be 0–{MAX_OLDER_THAN} seconds", returncode=2)
        settled = reconcile_pending(options["older_than"])
        for order in settled:
            self.stdout.write(f"{order.client_order_id} {order.side} {order.symbol}: {order.status}")
        self.stdout.write(f"reconciled {len(settled)} order(s)")
