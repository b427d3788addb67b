"""manage.py notify --test | --daily-report | --list: send now, in this process, and print what happened."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ground.amounts import counted
from notify import rules, service
from notify.models import Destination, Notification
from notify.report import daily_report


class Command(BaseCommand):
    help = "Send a test message or the daily report to the notification destinations now (or --list them, masked)."

    def add_arguments(self, parser):
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--test", action="store_true", help="a test message to every enabled destination")
        what.add_argument(
            "--daily-report", action="store_true", help="today's report so far to destinations with topic daily"
        )
        what.add_argument("--list", action="store_true", help="the destinations, URLs masked")

    def handle(self, *args, **options):
        service.seed_from_env()
        if options["list"]:
            for d in Destination.objects.order_by("name"):
                state = "enabled" if d.enabled else "disabled"
                self.stdout.write(
                    f"{d.name}\t{d.masked_url}\tlevel={d.level}\ttopics={','.join(d.topic_list())}\t{state}"
                    f"\tfailures={d.consecutive_failures}"
                )
            return
        if options["test"]:
            stored = service.queue_to_all(Notification.Topic.TEST, service.test_notice(), schedule=False)
        else:
            stored = service.queue_to_all(Notification.Topic.DAILY, rules.daily_message(daily_report()), schedule=False)
        if not stored:
            raise CommandError(
                "no enabled destination takes this message (NOTIFY_URLS or admin: Destinations)", returncode=2
            )
        failed = 0
        for notification in stored:
            outcome = service.attempt(notification.pk, max_attempts=1)
            notification.refresh_from_db()
            if outcome == "sent":
                self.stdout.write(self.style.SUCCESS(f"sent to {notification.destination_name}"))
            else:
                failed += 1
                self.stdout.write(self.style.ERROR(f"FAILED {notification.destination_name}: {notification.error}"))
        if failed:
            raise CommandError(f"{failed} of {counted(len(stored), 'destination')} failed", returncode=1)
