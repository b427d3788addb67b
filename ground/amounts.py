"""Amounts and times as people read them, and exact decimal strings for machines. Pure functions.

Money is shown in its quote currency's precision (2 places for USDT, 8 for BTC, …) with thousands separators and
the quote as unit, prices likewise (with more places for a cheap coin), quantities exact in their base asset;
JSON carries exact decimal strings without exponent or trailing zeros (``plain``); times for people are ISO 8601
UTC (``iso_utc``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

DEFAULT_QUOTE = "USDT"
DEFAULT_DECIMALS = 8
PRICE_DIGITS = 6  # significant digits a price keeps at least, whatever its quote's places
# Places a person reads an amount of the quote currency in: fiat and stablecoins to the cent, coins to the satoshi.
QUOTE_DECIMALS = {
    "USDT": 2,
    "USDC": 2,
    "USDE": 2,
    "FDUSD": 2,
    "TUSD": 2,
    "BUSD": 2,
    "DAI": 2,
    "USD": 2,
    "EUR": 2,
    "BTC": 8,
    "ETH": 8,
    "BNB": 8,
}


# 10^-places by places, made once: the quantize steps of every amount said in a reason, an alert or a report
_STEPS = {places: Decimal(1).scaleb(-places) for places in range(-4, 41)}


def _step(places: int) -> Decimal:
    step = _STEPS.get(places)
    return step if step is not None else Decimal(1).scaleb(-places)


# The format of an amount to ``places``, thousands separated, by places: made once, not per amount said
_GROUPED = {places: f",.{places}f" for places in range(41)}


def _grouped(places: int) -> str:
    spec = _GROUPED.get(places)
    return spec if spec is not None else f",.{places}f"


def base_of(symbol: str) -> str:
    """``BTC_USDT`` → ``BTC`` (the name itself when it has no quote part)."""
    return symbol.rsplit("_", 1)[0]


def quote_of(symbol: str) -> str:
    """``BTC_USDT`` → ``USDT`` (``""`` for a name without a quote part)."""
    return symbol.rsplit("_", 1)[1] if "_" in symbol else ""


def common_quote(symbols: Iterable[str], default: str = DEFAULT_QUOTE) -> str:
    """The quote currency the symbols share (an account's money), else ``default``."""
    quotes = {quote_of(s) for s in symbols} - {""}
    return quotes.pop() if len(quotes) == 1 else default


def mixed_quotes(symbols: Iterable[str]) -> str | None:
    """Why markets of two quote currencies cannot share one account (None: they share one). The account counts its
    money in one currency: an ETH_BTC entry beside BTC_USDT would be sized from USDT and its P&L added to USDT cash.
    Said as the replay into an existing account says it (``execution.replay_fit``), the account's money being USDT
    when one of the markets is quoted in it."""
    by_quote: dict[str, list[str]] = {}
    for symbol in sorted(set(symbols)):
        by_quote.setdefault(quote_of(symbol), []).append(symbol)
    by_quote.pop("", None)
    if len(by_quote) < 2:
        return None
    account = DEFAULT_QUOTE if DEFAULT_QUOTE in by_quote else min(by_quote)
    foreign = sorted(s for quote, listed in by_quote.items() if quote != account for s in listed)
    quotes = ", ".join(sorted(set(by_quote) - {account}))
    return (
        f"{', '.join(foreign)} is quoted in {quotes} but {', '.join(by_quote[account])} in {account}: one account "
        f"counts its money in one quote currency (orders would be sized from {account} and the equity mislabelled)"
    )


def decimals_for(quote: str) -> int:
    return QUOTE_DECIMALS.get(quote.upper(), DEFAULT_DECIMALS)


def _decimal(value) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def money(value, quote: str = DEFAULT_QUOTE, *, unit: bool = False, sign: bool = False) -> str:
    """``10155.57963252087875700000000`` → ``10,155.58`` (``10,155.58 USDT`` with ``unit``); ``–`` for nothing.
    Rounded half to even in the quote's places; never ``-0.00``."""
    return _fixed(value, decimals_for(quote), quote if unit else "", sign=sign)


def price(value, quote: str = DEFAULT_QUOTE, *, rounding: str = ROUND_HALF_EVEN) -> str:
    """A price, with its quote as unit: the quote's places, more where a coin is cheap enough to need them for
    ``PRICE_DIGITS`` significant digits, no trailing zeros past the quote's (``194.17710093`` → ``194.177 USDT``,
    ``99.9500`` → ``99.95 USDT``, ``0.0000123456789`` → ``0.0000123457 USDT``). ``rounding``: ``ROUND_FLOOR`` for a
    stop, which a message must never show above the stored one."""
    number = _decimal(value)
    places = decimals_for(quote)
    if number is not None and number.is_finite() and number != 0:
        wanted = max(places, PRICE_DIGITS - number.adjusted() - 1)
        rounded = number.quantize(_step(wanted), rounding=rounding).normalize()
        places = max(places, -rounded.as_tuple().exponent)  # no trailing zeros past the quote's places
    return _fixed(number, places, quote, rounding=rounding)


def quantity(value, asset: str = "") -> str:
    """A quantity of ``asset`` (a symbol's base, ``base_of``), exact and thousands separated, trailing zeros off:
    ``1772.329280850000`` → ``1,772.32928085 XRP``."""
    number = value if value.__class__ is Decimal else _decimal(value)
    if number is None or not number.is_finite():
        return "–"
    text = format(number.normalize(), ",f") if number else "0"
    return f"{text} {asset}" if asset else text


def percent(value, places: int = 2, *, sign: bool = False, fraction: bool = True) -> str:
    """A fraction as people read it in percent: ``0.0123`` → ``1.23 %`` (``_pct`` values are fractions, SPEC §4:
    0.10 = 10 %); with ``fraction=False`` a value already in percent (a backtest's ``total_return_pct``, a trade's
    ``profit_loss_percent``): ``12.345`` → ``12.34 %``. Rounded half to even on the exact value (a float by its
    shortest form, as ``money``), never ``-0.00 %``; ``–`` for nothing. The pages' ``CdbPriceChart.percent`` is the
    same rule (tests/unit/test_js_amounts.py)."""
    number = _decimal(value)
    if number is None or not number.is_finite():
        return "–"
    return _fixed(number.scaleb(2) if fraction else number, places, "%", sign=sign)


def counted(count: int, noun: str, plural: str = "") -> str:
    """A count with its noun in the right number: ``1 trade``, ``0 trades``, ``2 retries`` (``plural`` when it is
    not the noun + s). The pages' ``CdbPriceChart.counted`` is the same rule."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


RATIO_PLACES = 2  # a profit factor, a Sharpe ratio: what a person compares runs by
SECONDS_PLACES = 3  # a run's time: to the millisecond


def ratio(value) -> str:
    """A ratio (profit factor, Sharpe) to ``RATIO_PLACES``, half to even: ``-10.0375`` → ``-10.04``; ``–`` for none."""
    return _fixed(value, RATIO_PLACES)


def seconds(value) -> str:
    """A run's time in seconds to the millisecond: ``0.25216`` → ``0.252 s``; ``–`` for nothing."""
    return _fixed(value, SECONDS_PLACES, "s")


def duration(value) -> str:
    """A span of seconds in whole minutes (half to even), as days, hours and minutes: ``3840`` → ``1h 4m``,
    ``13200`` → ``3h 40m``, ``90000`` → ``1d 1h 0m``, ``600`` → ``10m``; ``–`` for nothing."""
    number = _decimal(value)
    if number is None or not number.is_finite():
        return "–"
    minutes = int((number / 60).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    return (f"{days}d " if days else "") + (f"{hours}h " if days or hours else "") + f"{minutes}m"


# A trade's exit reason as people read it (the reports and the pages); other codes are shown as they are.
EXIT_REASONS = {"stop_loss": "stop-loss", "drawdown_close": "drawdown close", "operator_close": "operator"}


def exit_reason(code: str | None) -> str:
    """``stop_loss`` → ``stop-loss``; ``–`` for an open trade."""
    return "–" if code is None else EXIT_REASONS.get(code, code)


def _fixed(value, places: int, unit: str = "", *, sign: bool = False, rounding: str = ROUND_HALF_EVEN) -> str:
    number = value if value.__class__ is Decimal else _decimal(value)
    if number is None or not number.is_finite():
        return "–"
    rounded = number.quantize(_step(places), rounding=rounding)
    if not rounded:  # never -0.00
        rounded = abs(rounded)
    text = format(rounded, _grouped(places))
    if sign and rounded > 0:
        text = "+" + text
    return f"{text} {unit}" if unit else text


def plain(value) -> str | None:
    """The exact decimal string: no exponent, no trailing zeros (``194.177100930000`` → ``194.17710093``)."""
    number = value if value.__class__ is Decimal else _decimal(value)  # a Decimal: what a decision says, ~20 times
    if number is None:
        return None
    if not number.is_finite():
        return str(number)
    return format(number.normalize(), "f") if number else "0"


STORED_PLACES = Decimal("1e-12")  # what a MoneyField holds: 12 fractional digits


def stored(value) -> str | None:
    """The exact decimal string of ``value`` as the store holds it: rounded half to even to 12 places, then
    ``plain`` (``100.10000000000001`` → ``100.1``, ``194.177100930000`` → ``194.17710093``). What events carry."""
    number = _decimal(value)
    if number is None or not number.is_finite():
        return plain(number)
    return plain(number.quantize(STORED_PLACES, rounding=ROUND_HALF_EVEN))


def iso_utc(epoch_ms: int | None) -> str:
    """Epoch milliseconds → ``2024-03-01T12:34:56Z`` (``–`` for nothing): every time a person reads, in one shape (the
    pages' ``CdbPriceChart.isoTime``, the admin's); JSON has ``ground.timeutil.iso_z``'s."""
    if epoch_ms is None:
        return "–"
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
