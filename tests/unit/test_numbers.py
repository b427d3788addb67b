"""The one rule for a number a person types (ground.numbers): ASCII digits with at most one '.', a '-' only where
negatives make sense; whatever else Python's Decimal, int or float would read is refused, saying the rule."""

from decimal import Decimal

import pytest

from ground.numbers import number_option, typed_number, typed_whole


@pytest.mark.parametrize(("text", "value"), [("0.1", "0.1"), (" 12 ", "12"), ("5.", "5"), (".5", "0.5"), ("007", "7")])
def test_plain_ascii_numbers_are_read_exactly(text, value):
    assert typed_number(text) == Decimal(value)


@pytest.mark.parametrize(
    "text", ["1_0", "0.1_2", "5e-2", "1E3", "+0.1", "-0.1", "١٠٠", "０.２", "1.2.3", ".", "", "nan", "inf", "0x10"]
)
def test_what_python_reads_and_a_person_does_not_mean_is_refused(text):
    with pytest.raises(ValueError, match="is not a number in ASCII digits 0-9 with at most one '.' point"):
        typed_number(text)


def test_a_minus_only_where_negatives_make_sense_and_whole_numbers():
    assert typed_number("-0.5", negative=True) == Decimal("-0.5")
    with pytest.raises(ValueError, match=r"\(no sign; no '_', exponent or '\+'\)"):
        typed_number("-0.5")
    assert typed_whole("30") == 30 and typed_whole("30.0") == 30
    with pytest.raises(ValueError, match="not a whole number"):
        typed_whole("30.5")


def test_an_option_type_says_the_rule_or_the_range():
    import argparse

    seconds = number_option(0.001, 3600, cast=float)
    assert seconds("0.001") == 0.001 and isinstance(seconds("1"), float)  # the bound itself, exactly
    with pytest.raises(argparse.ArgumentTypeError, match="invalid value: '1_0' is not a number"):
        seconds("1_0")
    with pytest.raises(argparse.ArgumentTypeError, match="invalid value: 3601 is not 0.001–3600"):
        seconds("3601")
