"""Where the tests find the repository and the shared data, wherever under tests/ a test file lives."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"  # ../shared/data: candle files that are not in the repository
CANDLES = SHARED_DATA / "candles"


def shared_data_problem() -> str | None:
    """Why the tests marked ``shared_data`` cannot run here, or None when they can."""
    if not any(CANDLES.glob("*.csv")):
        return f"../shared/data is absent: no candle files in {CANDLES}"
    return None
