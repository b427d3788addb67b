"""The page's money and price formatters (static/cdb/pricechart.js, used by the dashboard, the backtest pages and the
HTML report) run in Node and agree with ground/amounts to the digit: round half to even on the exact decimal string,
no float artefacts, never "-0.00" (issue 22: 1234.565 was "1,234.57" on the page, "1,234.56" in risk_status)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ground import amounts
from tests.support import processes

CHART_JS = Path(__file__).resolve().parents[2] / "static" / "cdb" / "pricechart.js"

# Load the real file into a bare context (no DOM: the formatters need none) and format every value asked for.
RUNNER = """
const vm = require("vm"), fs = require("fs");
const context = {window: {LightweightCharts: {}}};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), context);
const chart = context.window.CdbPriceChart, asked = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(asked.map(([kind, value, ...rest]) => chart[kind](value, ...rest))));
"""

EDGES = [
    "1234.565",
    "1234.575",
    "1234.5650000001",
    "0.005",
    "0.015",
    "0.025",
    "-0.005",
    "-0.015",
    "-1234.565",
    "0.0000000005",
    "0.0000000015",
    "-0.0000000005",
    "12345678901234567890.125",
    "99999999999999999.995",
    "10155.57963252087875700000000",
    "0",
    "-0",
    "0.00",
    "999.995",
    "2.675",
    "1.005",
    "100",
    ".5",
]


def _node(asked: list) -> list[str]:
    done = processes.run(
        ["node", "-e", RUNNER, str(CHART_JS)], input=json.dumps(asked).encode(), capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (installed with the browser tests' npm ci)")
def test_js_money_rounds_as_ground_amounts():
    asked = [["money", value, places] for value in EDGES for places in (2, 8)]
    # Numbers the page computes itself (unrealized P&L) round from their shortest form, as Python's str(float) does.
    asked += [["money", number, 2] for number in (1234.565, 2.675, 1e-10, -5e-3, 1e21, 0.1 + 0.2)]
    want = [amounts.money(value, "USDT" if places == 2 else "BTC") for _, value, places in asked]
    assert _node(asked) == want


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (installed with the browser tests' npm ci)")
def test_js_price_rounds_as_ground_amounts():
    values = EDGES + ["194.17710093", "36416.3149", "0.0000363882", "110.55525", "0.0000123456789", "99.9500"]
    asked = [["price", value, places] for value in values for places in (2, 8)]
    want = [amounts.price(value, "USDT" if places == 2 else "BTC").rsplit(" ", 1)[0] for _, value, places in asked]
    assert _node(asked) == want


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (installed with the browser tests' npm ci)")
def test_js_duration_and_exit_reason_say_what_ground_amounts_says():
    """The dashboard's trades table and the backtest pages (served ``amounts``) show one duration and reason shape:
    ``1h 4m`` and ``stop-loss`` (the backtest page said ``220 min``, the HTML report ``stop_loss``)."""
    spans = [0, 29, 30, 90, 150, 600, 3840, 13200, 3599, 3570, 86400, 90000, 200000.5, None]
    reasons = ["stop_loss", "drawdown_close", "operator_close", "signal", None]
    asked = [["duration", span, None] for span in spans] + [["exitReason", code, None] for code in reasons]
    want = [amounts.duration(span) for span in spans] + [amounts.exit_reason(code) for code in reasons]
    assert _node(asked) == want
    assert want[6:8] == ["1h 4m", "3h 40m"] and want[-5] == "stop-loss"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (installed with the browser tests' npm ci)")
def test_a_count_has_its_noun_in_the_right_number_on_pages_and_in_commands():
    """ "1 trade", never "1 trades" (the dashboard's closed-trades total, the optimizer's folds, the feeds' reports)."""
    asked = [["counted", n, "trade"] for n in (0, 1, 2, "1", 21)] + [["counted", 1, "retry", "retries"]]
    asked += [["counted", 3, "retry", "retries"]]
    want = [amounts.counted(int(n), *rest) for _, n, *rest in asked]
    assert want == ["0 trades", "1 trade", "2 trades", "1 trade", "21 trades", "1 retry", "3 retries"]
    assert _node(asked) == want


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (installed with the browser tests' npm ci)")
def test_a_time_reads_the_same_on_the_pages_and_in_the_commands():
    """One shape for people: ``2026-12-03T14:01:00Z`` (the dashboard said ``2026-12-03 14:01:00 UTC``, its closed
    trades and the backtest pages ``2026-12-03 14:01``); from epoch ms or the API's ISO text."""
    moments = [1_764_770_460_000, 1_764_770_460_999, 1_515_560_400_000]
    asked = [["isoTime", ms] for ms in moments] + [["isoTime", "2026-12-03T14:01:00.123Z"], ["isoTime", None]]
    want = [amounts.iso_utc(ms) for ms in moments] + ["2026-12-03T14:01:00Z", "–"]
    assert want[:3] == ["2025-12-03T14:01:00Z", "2025-12-03T14:01:00Z", "2018-01-10T05:00:00Z"]
    assert _node(asked) == want


def test_ratios_and_run_time_have_one_shape():
    assert [amounts.ratio(v) for v in (0.41812, -10.0375, "2.125", None)] == ["0.42", "-10.04", "2.12", "–"]
    assert amounts.seconds(0.25216) == "0.252 s" and amounts.seconds(None) == "–"


# Percentages: fractions (the live _pct, win rates) and values already in percent (a backtest's *_pct, a trade's
# profit_loss_percent), as strings from the API and as numbers the page computes (unrealized P&L %).
PERCENTS = EDGES + ["0.0012345", "0.00125", "0.00135", "-0.00125", "0.000049", "-0.00005", "0.1234565", "1e-7", "12.3"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (installed with the browser tests' npm ci)")
def test_js_percent_rounds_as_ground_amounts():
    """One rule for every percentage (issue 22): the pages rounded a float product half up (``0.00125`` → ``0.13 %``,
    ``12.345`` → ``12.35 %``) where the commands print ``0.12 %`` and ``12.34 %``."""
    asked = [
        ["percent", value, places, fraction, sign]
        for value in PERCENTS
        for places in (1, 2)
        for fraction in (True, False)
        for sign in (False, True)
    ]
    asked += [["percent", number, 2, True, True] for number in (0.00125, 2.675 / 100, 1 / 3, -1e-9, 1.1 - 1)]
    asked += [["percent", value, 2, True, False] for value in (None, "")]
    want = [amounts.percent(value, places, sign=sign, fraction=fraction) for _, value, places, fraction, sign in asked]
    got = _node(asked)
    assert got == want
    assert amounts.percent("0.00125") == "0.12 %" and amounts.percent(12.345, fraction=False) == "12.34 %"
    assert amounts.percent("-0.00004") == "0.00 %" and amounts.percent("0.0001", sign=True) == "+0.01 %"
