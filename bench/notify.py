"""Benchmark: what notifications cost the code that raises an alert, embedded (SQLite, deliveries in the notify
background thread) unless DATABASE_URL / REDIS_URL say otherwise (then enqueueing to Redis; run a worker -Q notify
to see deliveries).

    .venv/bin/python bench/notify.py [--alerts 200]

Prints the time per ``raise_alert`` with no destination, with one healthy local webhook, and with one that answers
500 after 2 s (retried in the background), and how many messages a burst of 50 alerts became.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench-notify.sqlite3"
    os.environ.setdefault("NOTIFY_BURST_WINDOW_SEC", "2")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ["DJANGO_SETTINGS_MODULE"] = "cdb_project.settings"
    import django

    django.setup()
    from django.core.management import call_command

    from notify import dispatch, hooks, service
    from notify.models import Destination
    from risk.alerts import raise_alert
    from tests.support.notify_servers import WebhookServer

    call_command("migrate", verbosity=0)
    Destination.objects.all().delete()
    raise_alert("INFO", "WARMUP", "imports and first queries")
    dispatch.wait_idle(30)

    def per_alert(label: str) -> None:
        hooks.forget()
        times = []
        for i in range(args.alerts):
            start = time.perf_counter()
            raise_alert("WARNING", "BENCH", f"{label} {i}")
            times.append(time.perf_counter() - start)
        print(
            f"{label:<34} raise_alert: median {statistics.median(times) * 1000:.2f} ms, "
            f"p99 {sorted(times)[int(len(times) * 0.99) - 1] * 1000:.2f} ms, max {max(times) * 1000:.2f} ms"
        )

    per_alert("no destination")
    with WebhookServer() as healthy:
        service.seed_from_env(healthy.url())
        per_alert("one healthy webhook")
        dispatch.wait_idle(120)
        Destination.objects.all().delete()
    with WebhookServer(status=500, delay=2.0) as failing:
        service.seed_from_env(failing.url())
        per_alert("one webhook answering 500 after 2 s")
        Destination.objects.all().delete()
    with WebhookServer() as burst:
        service.seed_from_env(burst.url())
        time.sleep(float(os.environ["NOTIFY_BURST_WINDOW_SEC"]))
        for i in range(50):
            raise_alert("WARNING", "BURST", f"alert {i}")
        deadline = time.monotonic() + 30
        while len(burst.received) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        limit = os.environ.get("NOTIFY_BURST_LIMIT", 5)
        print(f"burst of 50 alerts → {len(burst.received)} messages (NOTIFY_BURST_LIMIT={limit})")


if __name__ == "__main__":
    main()
