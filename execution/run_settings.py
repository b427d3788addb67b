"""The settings a run's money starts from — the capital, the sizing and the paper exchange's model — checked before
anything runs, so that ``manage.py backtest`` and ``manage.py run_feed --source replay`` say a bad one in one line
(exit 2) instead of failing in every consumer task (``INITIAL_CAPITAL=1e30`` is beyond what a portfolio stores).

No Django here: the values are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from ground.numbers import number_rule, typed_number

# A portfolio's cash is stored with 12 decimals in 30 digits (ground.fields.MoneyField): below 10^18, with room to grow.
CAPITAL_RANGE = (Decimal("0.00000001"), Decimal("1e15"))
SIZING_RANGE = (Decimal("0.001"), Decimal(1))  # POSITION_SIZE_PCT: a share of the equity per entry
RANGES = {
    "INITIAL_CAPITAL": CAPITAL_RANGE,
    "POSITION_SIZE_PCT": SIZING_RANGE,
    "PAPER_SLIPPAGE_PCT": (Decimal(0), Decimal("0.5")),
    "FEE_RATE": (Decimal(0), Decimal("0.5")),
    "PAPER_FAILURE_RATE": (Decimal(0), Decimal(1)),
    "PAPER_MAX_VOLUME_SHARE": (Decimal(0), Decimal(1)),  # 0 turns partial fills off
}


def checked_decimal(name: str, text: object, low: Decimal, high: Decimal) -> Decimal:
    """``text`` as a Decimal between ``low`` and ``high``; ValueError saying so otherwise. A text follows
    ``ground.numbers``' rule (no NaN, infinities, words, ``1_0``, ``5e-2`` or ``١٠٠``)."""
    negative = low < 0
    try:
        value = typed_number(text, negative=negative) if isinstance(text, str) else Decimal(str(text))
    except (InvalidOperation, ValueError):
        value = None
    if value is None or not value.is_finite() or not low <= value <= high:
        raise ValueError(
            f"{name}={str(text)!r}: must be a number in {low:f}–{high:f}, in {number_rule(negative=negative)}"
        )
    return value


def run_settings_problem(values: Mapping[str, object]) -> str | None:
    """The first of ``values`` (setting name → its text) out of its range, said in one line (None: all fit)."""
    for name, text in values.items():
        low, high = RANGES[name]
        try:
            checked_decimal(name, text, low, high)
        except ValueError as error:
            return str(error)
    return None
