"""What the failure drills share: settings that make a short replay trade often, and its zig-zag candles."""

from __future__ import annotations

from pathlib import Path

# sma_cross(2,3) on a zig-zag buys and sells every few candles; the limits leave room for all of it.
DRILL_ENV = {
    "STRATEGY": "sma_cross:fast=2,slow=3",
    "PAPER_FAILURE_RATE": "0",
    "MAX_ORDERS_PER_MINUTE": "600",
    "MAX_DAILY_DRAWDOWN_PCT": "0.20",
    "MAX_EXPOSURE_PCT": "1.0",
    "POSITION_SIZE_PCT": "0.05",
}


def zigzag_csv(path: Path, rows: int, start: int = 1_735_689_600_000) -> Path:
    """``rows`` 1m candles rising slowly with an 8-candle zig-zag (exits are profitable)."""
    lines = ["timestamp_ms,open,high,low,close,volume"]
    for i in range(rows):
        k = i % 8
        price = 100 * (1 + 0.0004 * i) * (1 + 0.005 * (k if k <= 4 else 8 - k))
        lines.append(f"{start + i * 60_000},{price:.6f},{price * 1.001:.6f},{price * 0.999:.6f},{price:.6f},1000")
    path.write_text("\n".join(lines) + "\n")
    return path
