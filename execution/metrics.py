"""Prometheus metrics of the executor."""

from prometheus_client import Counter, Histogram

trades_total = Counter("trades_total", "Orders executed (filled or partially filled)", ["side"])
trades_failed_total = Counter("trades_failed_total", "Orders that failed or were rejected at execution", ["status"])
order_latency_seconds = Histogram(
    "order_latency_seconds",
    "Wall time from storing the market_data that caused a signal to its order_result",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Every label an order can end with, at 0 until it happens: /metrics lists the counters from start-up.
for _side in ("BUY", "SELL"):
    trades_total.labels(side=_side)
for _status in ("FAILED", "REJECTED", "EXPIRED", "UNKNOWN"):
    trades_failed_total.labels(status=_status)
