"""One rule for every number a person types — a risk parameter in the API, the admin or the environment, a command's
option (``backtest --capital``, ``--param``, ``run_feed --speed``, ``optimize --trials``): ASCII digits 0-9 with at most
one ``.`` point, and a leading ``-`` only where a negative number makes sense.

Python reads much more as a number: ``Decimal`` and ``int`` take ``1_0`` (10), ``5e-2``, ``+0.1``, ``١٠٠`` (100 in
Arabic-Indic digits) and full-width ``０.２``; ``float`` also ``inf`` and ``nan``. Nobody means those in a risk limit
or a capital: a typo would become a number the person never saw, so each is refused, saying the rule.
"""

from __future__ import annotations

import argparse
import re
from decimal import Decimal

UNSIGNED = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
SIGNED = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


def number_rule(*, negative: bool = False) -> str:
    """The rule, as the errors say it."""
    sign = "an optional leading '-'" if negative else "no sign"
    return f"ASCII digits 0-9 with at most one '.' point ({sign}; no '_', exponent or '+')"


def typed_number(text: str, *, negative: bool = False) -> Decimal:
    """``text`` (spaces around it allowed) as a Decimal when it follows the rule; ValueError saying the rule otherwise
    (``'1_0' is not a number in ASCII digits 0-9 with at most one '.' point (no sign; no '_', exponent or '+')``)."""
    stripped = text.strip()
    if not (SIGNED if negative else UNSIGNED).fullmatch(stripped):
        raise ValueError(f"{text!r} is not a number in {number_rule(negative=negative)}")
    return Decimal(stripped)


def typed_whole(text: str, *, negative: bool = False) -> int:
    """A whole number by the same rule (``30`` or ``30.0``); ValueError for ``30.5`` too."""
    number = typed_number(text, negative=negative)
    if number != number.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number")
    return int(number)


def number_option(low: float | None = None, high: float | None = None, *, whole: bool = False, cast=None):
    """An argparse ``type`` for a command's numeric option by the rule, between ``low`` and ``high`` (when given):
    ``--backfill 1_0`` is a usage error naming the rule (exit 2), as ``--backfill 99999999999`` one naming the range.
    Gives an int for ``whole``, else ``cast`` of the Decimal (``float``; the Decimal itself without one)."""
    negative = low is None or low < 0
    least, most = (None if x is None else Decimal(str(x)) for x in (low, high))  # exactly: 0.001, not float's

    def parse(text: str):
        try:
            number = typed_whole(text, negative=negative) if whole else typed_number(text, negative=negative)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"invalid value: {error}") from None
        if (least is not None and number < least) or (most is not None and number > most):
            bounds = f"at least {low}" if high is None else f"at most {high}" if low is None else f"{low}–{high}"
            raise argparse.ArgumentTypeError(f"invalid value: {text} is not {bounds}")
        return number if whole or cast is None else cast(number)

    return parse


SEED = number_option(0, 2**32 - 1, whole=True)  # a random seed option (``--seed``): what numpy's generators take
