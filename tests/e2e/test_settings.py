"""Risk parameters seeded from the environment, validated against SPEC §4's ranges."""

import sys
from decimal import Decimal

import pytest

from risk.parameters import PARAMETER_SPECS, seed_from_env
from tests.support import processes
from tests.support.processes import ROOT


def test_defaults_when_nothing_is_set():
    seeded = seed_from_env({})
    assert {name: s.value for name, s in seeded.items()} == {name: s.default for name, s in PARAMETER_SPECS.items()}
    assert {s.source for s in seeded.values()} == {"default"}
    assert seeded["MAX_POSITION_PCT"].value == Decimal("0.10")


@pytest.mark.parametrize("raw,expected", [("0.01", "0.01"), ("0.25", "0.25"), ("0.2", "0.2")])
def test_in_range_values_are_taken_from_env(raw, expected):
    seeded = seed_from_env({"MAX_POSITION_PCT": raw})["MAX_POSITION_PCT"]
    assert (seeded.value, seeded.source, seeded.warning) == (Decimal(expected), "env", None)


@pytest.mark.parametrize("raw", ["0.9", "0.0099", "0.2501", "abc", "nan", "-0.1"])
def test_out_of_range_or_malformed_values_fall_back_with_a_warning(raw):
    seeded = seed_from_env({"MAX_POSITION_PCT": raw})["MAX_POSITION_PCT"]
    assert seeded.value == Decimal("0.10") and seeded.source == "default"
    assert seeded.warning.startswith("MAX_POSITION_PCT: ") and "using the default 0.10" in seeded.warning


def test_whole_number_parameters_refuse_fractions():
    seeded = seed_from_env({"DATA_STALE_TIMEOUT_SEC": "30.5"})["DATA_STALE_TIMEOUT_SEC"]
    assert seeded.value == 30 and "whole number" in seeded.warning


def test_start_up_warns_about_an_out_of_range_env_value(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MAX_POSITION_PCT": "0.9", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    done = processes.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "MAX_POSITION_PCT: 0.9 is out of range (allowed 0.01–0.25); using the default 0.10" in done.stderr
