"""The paper exchange: fills at the market price with slippage and fees, fails at a seeded rate, and fills
only part of an order when the candle's volume is thin.

Pure: the random draw is seeded by (seed, client_order_id), so a redelivered
order always gets the same outcome and every run is reproducible.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache
from typing import NamedTuple

from ground import amounts

from .accounting import money

QUANTITY_STEP = Decimal("0.00000001")


@lru_cache(maxsize=8)
def _share_text(share: Decimal) -> str:
    """The volume share a thin-volume fill names (``25.00 %``): one exchange's is the same in each of its partial
    fills (most fills of a backtest), so it is said once."""
    return amounts.percent(share)


class Fill(NamedTuple):  # immutable; a tuple: one per order, ~4× cheaper to build than a frozen dataclass
    status: str  # FILLED, PARTIALLY_FILLED, FAILED or REJECTED
    quantity: Decimal
    price: Decimal | None
    fee: Decimal
    order_id: str
    reason: str = ""


@dataclass(frozen=True)
class PaperExchange:
    slippage_pct: Decimal = Decimal("0.0005")
    fee_rate: Decimal = Decimal("0.001")
    failure_rate: Decimal = Decimal("0.05")
    seed: int = 42
    max_volume_share: Decimal = Decimal("0")  # 0: no partial fills; 0.25: at most a quarter of the candle's volume

    def _draw(self, client_order_id: str) -> float:
        digest = hashlib.sha256(f"{self.seed}:{client_order_id}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big")).random()

    def fill(
        self,
        client_order_id: str,
        side: str,
        quantity: Decimal,
        market_price: Decimal,
        volume: Decimal | None = None,
        *,
        asset: str = "",
    ) -> Fill:
        """``asset``: the base asset the quantity and volume are counted in, for the reason a person reads."""
        order_id = "PAPER_" + hashlib.sha256(client_order_id.encode()).hexdigest()[:16].upper()
        failure_rate = float(self.failure_rate)
        # A draw is in [0, 1): with a failure rate of 0 (or below) it can never fail, so it is not drawn.
        if failure_rate > 0.0 and self._draw(client_order_id) < failure_rate:
            return Fill("FAILED", Decimal(0), None, Decimal(0), order_id, "paper exchange: simulated failure")
        status, reason = "FILLED", ""
        if self.max_volume_share > 0 and volume is not None:
            available = (volume * self.max_volume_share).quantize(QUANTITY_STEP, ROUND_DOWN)
            if available <= 0:
                return Fill("FAILED", Decimal(0), None, Decimal(0), order_id, "paper exchange: no volume to fill")
            if quantity > available:
                reason = (
                    f"thin volume: filled {amounts.quantity(available, asset)} of {amounts.quantity(quantity, asset)}"
                    f" ordered ({_share_text(self.max_volume_share)} of the candle's volume "
                    f"{amounts.quantity(volume, asset)})"
                )
                quantity, status = available, "PARTIALLY_FILLED"
        direction = 1 if side == "BUY" else -1
        price = money(market_price * (1 + direction * self.slippage_pct))
        fee = money(price * quantity * self.fee_rate)
        return Fill(status, quantity, price, fee, order_id, reason)
