from django.core.management.base import BaseCommand, CommandError

from ground.amounts import counted
from ground.numbers import number_option
from risk.reconcile import reconcile_balances, reconcile_pending

MAX_OLDER_THAN = 10 * 365 * 86_400  # ten years: far beyond any order, and well within what a date can subtract


class Command(BaseCommand):
    help = (
        "Settle PENDING orders older than a timeout (left by a crash); each is executed at most once. "
        "With --balances, then compare the book with the exchange's balances (live trading)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=number_option(whole=True),
            default=None,
            help="seconds (default PENDING_ORDER_TIMEOUT_SEC)",
        )
        parser.add_argument(
            "--balances",
            action="store_true",
            help=(
                "compare the book's cash and positions with fetch_balance(); exit status 1 when they differ, "
                "3 when the comparison could not be made (no keys, exchange unreachable, order in flight)"
            ),
        )

    def handle(self, *args, **options):
        if options["older_than"] is not None and not 0 <= options["older_than"] <= MAX_OLDER_THAN:
            raise CommandError(f"--older-than must be 0–{MAX_OLDER_THAN} seconds", returncode=2)
        settled = reconcile_pending(options["older_than"])
        for order in settled:
            self.stdout.write(f"{order.client_order_id} {order.side} {order.symbol}: {order.status}")
        self.stdout.write(f"reconciled {counted(len(settled), 'order')}")
        if not options["balances"]:
            return
        report = reconcile_balances()
        self.stdout.write(f"balances: {report.detail}")
        if report.halted:
            self.stdout.write("trading HALTED (LIVE_RECONCILE_ACTION=halt)")
        if report.differences:
            raise CommandError("the book and the exchange's balances differ", returncode=1)
        if report.live and not report.checked:
            raise CommandError(f"the balances were not compared: {report.detail}", returncode=3)
