"""Trades as lots: a FILLED BUY opens one, a SELL closes them oldest first (splitting the last if needed).

Pure, so the executor and the backtest produce the same trade ids and the same profit/loss.
"""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import NamedTuple

from .accounting import money

_NAMESPACE = uuid.NAMESPACE_OID.bytes


def trade_id_for(client_order_id: str) -> str:
    """``uuid5(NAMESPACE_OID, client_order_id).hex[:20]`` prefixed with ``T-``, computed without the UUID object:
    the SHA-1 of namespace + name with the version (5) and variant (RFC 4122) bits set, as ``uuid.uuid5`` does."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + client_order_id.encode(), usedforsecurity=False).digest()[:10])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return "T-" + digest.hex()


class Lot(NamedTuple):  # immutable; a tuple: several per fill, ~4× cheaper to build than a frozen dataclass
    trade_id: str
    entry_client_order_id: str
    symbol: str
    quantity: Decimal
    entry_price: Decimal
    entry_time: int  # epoch ms
    entry_fees: Decimal
    stop: Decimal | None = None  # its stop-loss price (risk.engine.stop_price); a remainder keeps it


class ClosedLot(NamedTuple):  # immutable, a tuple (as Lot)
    lot: Lot
    exit_client_order_id: str
    exit_price: Decimal
    exit_time: int
    exit_fees: Decimal
    exit_reason: str

    @property
    def cost(self) -> Decimal:
        return self.lot.entry_price * self.lot.quantity + self.lot.entry_fees

    @property
    def profit_loss(self) -> Decimal:
        return money(self.exit_price * self.lot.quantity - self.exit_fees - self.cost)

    @property
    def profit_loss_percent(self) -> Decimal:
        return (self.profit_loss / self.cost * 100).quantize(Decimal("0.000001")) if self.cost else Decimal(0)


def open_lot(
    client_order_id: str,
    symbol: str,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    time: int,
    stop: Decimal | None = None,
) -> Lot:
    return Lot(trade_id_for(client_order_id), client_order_id, symbol, quantity, price, time, fee, stop)


def target_first(lots: list[Lot], trade_id: str | None) -> list[Lot]:
    """``lots`` (oldest first) with the lot of ``trade_id`` moved to the front: a stop-loss sells its own lot
    first, whatever its age. Unchanged when there is no such lot."""
    for i, lot in enumerate(lots):
        if lot.trade_id == trade_id:
            return [lot, *lots[:i], *lots[i + 1 :]]
    return lots


def exit_target(signal_id: str, purpose: str) -> str | None:
    """The trade a stop-loss order sells: its exit key is ``stop:<trade id>[#attempt]`` (``risk.desk``)."""
    if purpose != "stop_loss" or not signal_id.startswith("stop:"):
        return None
    return signal_id[len("stop:") :].split("#", 1)[0]


def close_lots(
    lots: list[Lot], quantity: Decimal, price: Decimal, fee: Decimal, client_order_id: str, time: int, reason: str
) -> tuple[list[ClosedLot], Lot | None]:
    """Close ``quantity`` from ``lots`` (oldest first). Returns the closed lots and, when the last lot was only
    partly sold, the lot that stays open for its remainder (a new trade id derived from the lot and the exit)."""
    closed: list[ClosedLot] = []
    remainder: Lot | None = None
    remaining = quantity
    for lot in lots:
        if remaining <= 0:
            break
        if lot.quantity > remaining:
            kept = lot.quantity - remaining
            kept_fees = money(lot.entry_fees * kept / lot.quantity)
            # The part left open is a trade of its own; its id is derived, so live and backtest agree on it.
            remainder = lot._replace(
                trade_id=trade_id_for(f"{lot.trade_id}|{client_order_id}"), quantity=kept, entry_fees=kept_fees
            )
            lot = lot._replace(quantity=remaining, entry_fees=lot.entry_fees - kept_fees)
        exit_fee = money(fee * lot.quantity / quantity)
        closed.append(ClosedLot(lot, client_order_id, price, time, exit_fee, reason))
        remaining -= lot.quantity
    return closed, remainder
