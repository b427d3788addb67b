"""Prometheus counters of notification deliveries (summed across worker processes in multiprocess mode)."""

from prometheus_client import Counter

notifications_sent_total = Counter(
    "notifications_sent_total",
    "Notification delivery attempts by destination and result (sent, retried, failed)",
    ["destination", "result"],
)
