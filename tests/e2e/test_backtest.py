"""The backtest command: its report, exact accounting, the risk invariants on every shared file, bad input."""

import json
import re
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.core.management import call_command

from risk.parameters import PARAMETER_SPECS
from tests.support import processes
from tests.support.paths import CANDLES
from tests.support.processes import ROOT

ALL_FILES = sorted(str(p) for p in CANDLES.glob("*.csv"))
FIVE_MINUTE = sorted(str(p) for p in CANDLES.glob("*-5m.csv"))
DEFAULTS = {name: spec.default for name, spec in PARAMETER_SPECS.items()}
RULE = "not a number in ASCII digits 0-9 with at most one '.' point"
pytestmark = pytest.mark.shared_data


def _backtest(tmp_path, *args) -> dict:
    out = tmp_path / "report.json"
    call_command("backtest", "--data", *args, "--json", str(out), "--no-progress", stdout=open(tmp_path / "o", "w"))
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def all_files_report(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("bt")
    return _backtest(tmp, *ALL_FILES, "--strategy", "momentum", "--failure-rate", "0.05")


def test_report_has_the_documented_keys_and_exact_accounting(all_files_report):
    r = all_files_report
    assert {
        "initial_capital",
        "final_equity",
        "candles",
        "seconds",
        "summary",
        "trades",
        "orders",
        "equity_curve",
        "risk_events",
    } <= set(r)
    assert r["candles"] == sum(sum(1 for _ in open(f)) - 1 for f in ALL_FILES)
    assert {
        "total_return_pct",
        "max_drawdown_pct",
        "trades",
        "win_rate",
        "profit_factor",
        "sharpe",
        "fees_paid",
        "time_in_market_pct",
        "per_symbol",
    } <= set(r["summary"])
    # equity = initial + realized + unrealized − fees, exactly, in decimal strings.
    assert D(r["final_equity"]) == D(r["initial_capital"]) + D(r["realized_pnl"]) + D(r["unrealized_pnl"]) - D(
        r["fees"]
    )
    assert D(r["equity_curve"][-1][1]) == D(r["final_equity"])
    trade = next(t for t in r["trades"] if t["exit_time"])
    assert {
        "symbol",
        "side",
        "entry_time",
        "entry_price",
        "quantity",
        "exit_time",
        "exit_price",
        "profit_loss",
        "profit_loss_percent",
        "exit_reason",
    } <= set(trade)
    assert isinstance(trade["entry_time"], int) and isinstance(trade["profit_loss"], str)
    order = r["orders"][0]
    assert {"client_order_id", "status", "risk_decision"} <= set(order) and len(order["client_order_id"]) <= 32
    assert any(o["status"] == "FAILED" for o in r["orders"])  # the 5 % failure rate is on


def test_invariants_hold_on_every_shared_file(all_files_report):
    r = all_files_report
    for event in r["risk_events"]:
        if event["decision"] not in ("APPROVE", "TRIM") or "details" not in event:
            continue
        d = event["details"]
        if D(event["approved_quantity"]) == 0 or d.get("requested_quantity") is None:
            continue
        equity, price, qty = D(d["equity"]), D(d["price"]), D(event["approved_quantity"])
        if "max_quantity_position" in d:  # entries
            assert D(d["position_value"]) + qty * price <= DEFAULTS["MAX_POSITION_PCT"] * equity
            assert D(d["exposure"]) + qty * price <= DEFAULTS["MAX_EXPOSURE_PCT"] * equity
    # Every stop-loss acted on once: one executed stop exit per trade (a failed or rejected one is tried again).
    stop_keys = [
        o["signal_id"].split("#")[0]
        for o in r["orders"]
        if o["purpose"] == "stop_loss" and o["status"] not in ("FAILED", "REJECTED")
    ]
    assert len(stop_keys) == len(set(stop_keys)) and stop_keys
    # No order executes while HALTED (the risk manager's own exits aside), and equity never goes negative.
    halted = [e["timestamp"] for e in r["risk_events"] if e["decision"] == "STATE_CHANGE" and "→ HALTED" in e["reason"]]
    if halted:
        assert not [
            o
            for o in r["orders"]
            if o["timestamp"] > halted[0]
            and o["status"] in ("FILLED", "PARTIALLY_FILLED")
            and o["purpose"] in ("entry", "exit")
        ]
    assert all(D(equity) > 0 for _, equity in r["equity_curve"])


def test_same_input_same_report(tmp_path):
    first = _backtest(tmp_path, FIVE_MINUTE[0], "--strategy", "momentum")
    second = _backtest(tmp_path, FIVE_MINUTE[0], "--strategy", "momentum")
    assert first["orders"] == second["orders"] and first["final_equity"] == second["final_equity"]


def test_params_dates_and_tight_limits_change_the_run(tmp_path):
    base = _backtest(tmp_path, FIVE_MINUTE[0], "--strategy", "momentum")
    tight = _backtest(
        tmp_path, FIVE_MINUTE[0], "--strategy", "momentum", "--param", "MAX_POSITION_PCT=0.01", "--param", "ema_fast=8"
    )
    assert tight["parameters"]["MAX_POSITION_PCT"] == "0.01" and tight["parameters"]["strategy.ema_fast"] == "8"
    assert tight["orders"] != base["orders"]
    window = _backtest(tmp_path, FIVE_MINUTE[0], "--from", "2018-01-12", "--to", "2018-01-13")
    assert 0 < window["candles"] <= 24 * 12 + 1
    # the candles opened in the window, each valued when it is known, at its close (5 min later)
    assert all(1515715200000 + 300_000 <= ts <= 1515801600000 + 300_000 for ts, _ in window["equity_curve"])


def test_symbols_outside_symbol_whitelist_get_no_entries(tmp_path, settings):
    files = FIVE_MINUTE[:2]
    both = _backtest(tmp_path, *files, "--strategy", "momentum")
    kept = both["orders"][0]["symbol"]
    settings.SYMBOL_WHITELIST = [kept]
    one = _backtest(tmp_path, *files, "--strategy", "momentum")
    assert {o["symbol"] for o in both["orders"]} != {kept}, "the two files must both trade for this test to mean much"
    assert {o["symbol"] for o in one["orders"]} == {kept}
    refused = [e for e in one["risk_events"] if e["layer"] == "watchlist"]
    assert refused and all(e["symbol"] != kept for e in refused)


def test_html_report_is_self_contained(tmp_path):
    html = tmp_path / "r.html"
    call_command(
        "backtest", "--data", FIVE_MINUTE[0], "--html", str(html), "--no-progress", stdout=open(tmp_path / "o", "w")
    )
    page = html.read_text()
    assert "<table>" in page and "Final equity" in page and "CdbPriceChart" in page and "LightweightCharts" in page
    # Nothing to fetch: every script inlined, no tag that loads a resource from elsewhere (the inlined chart library
    # names its author's site in a link it draws and the SVG namespace, which load nothing).
    assert "<script src" not in page and '<link rel="stylesheet"' not in page
    assert not re.search(r"<(?:link|img|iframe|script|source)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", page)


def test_entries_refused_below_the_minimum_order_value_are_counted_and_said(tmp_path):
    """A capital whose entries are all below the market's minimum order value (0.0001 BTC): no order is placed, and
    the summary and the HTML report say how many entries were refused and why (not only the JSON's risk events)."""
    html, out = tmp_path / "r.html", tmp_path / "o"
    args = ("--data", FIVE_MINUTE[0], "--capital", "0.0005", "--html", str(html), "--json", str(tmp_path / "r.json"))
    call_command("backtest", *args, "--no-progress", stdout=open(out, "w"))
    report = json.loads((tmp_path / "r.json").read_text())
    refused = [e for e in report["risk_events"] if e["decision"] == "REJECT" and e["details"].get("side") == "BUY"]
    small = sum(e["layer"] == "min_notional" for e in refused)
    assert small and report["summary"]["orders"] == 0
    why = "below the minimum order value 0.00010000 BTC"
    said = why if small == len(refused) else f"{small} {why}"  # the most frequent reason first
    assert re.search(rf"^entries refused +{len(refused)}: {said}", out.read_text(), re.M), out.read_text()
    page = html.read_text()
    assert f"<b>Entries refused</b><span>{len(refused)}</span>" in page
    assert f"{len(refused)} entries refused by the risk layers: {said}" in page


@pytest.mark.django_db
def test_save_stores_the_run(tmp_path, admin_client):
    from trading.models import BacktestRun

    report = _backtest(tmp_path, FIVE_MINUTE[0], "--save")
    run = BacktestRun.objects.get()
    assert run.report["final_equity"] == report["final_equity"] and run.candles == report["candles"]
    assert abs(run.final_equity - D(report["final_equity"])) < D("1e-9")  # SQLite keeps ~16 digits in a column
    assert run.report["orders"] == report["orders"]
    assert admin_client.get("/admin/trading/backtestrun/").status_code == 200

    listed = admin_client.get("/api/backtests/").json()
    assert listed["count"] == 1
    row = listed["results"][0]
    assert row["id"] == run.pk and row["strategy"] == report["strategy"] and row["candles"] == report["candles"]
    assert row["summary"] == report["summary"] and "report" not in row
    assert abs(D(row["final_equity"]) - run.final_equity) < D("1e-9")  # the report's, the column rounds on SQLite
    detail = admin_client.get(f"/api/backtests/{run.pk}/").json()
    assert detail["report"]["orders"] == report["orders"] and detail["report"]["trades"] == report["trades"]
    # the list and the detail give the report's exact strings, not the columns' rounding (total_return_pct 6 places)
    for served in (row, detail):
        assert served["final_equity"] == report["final_equity"], served["final_equity"]
        assert served["initial_capital"] == report["initial_capital"]
        assert served["total_return_pct"] == report["summary"]["total_return_pct"], served["total_return_pct"]
    # Exact decimal strings, as every other endpoint: the summary's ratios and percentages (keys unchanged), and the
    # parameters as /api/risk/parameters/ gives them ("5", "0.5", never "5.0", "0.50").
    exact = re.compile(r"-?(0|[1-9]\d*)(\.\d*[1-9])?")
    for key in ("total_return_pct", "max_drawdown_pct", "sharpe", "win_rate", "time_in_market_pct", "profit_factor"):
        for summary in (report["summary"], row["summary"], detail["report"]["summary"]):
            assert summary[key] is None or exact.fullmatch(summary[key]), (key, summary[key])
    assert all(exact.fullmatch(item["win_rate"]) for item in report["summary"]["per_symbol"].values())
    live = admin_client.get("/api/risk/parameters/").json()
    for parameters in (report["parameters"], row["parameters"], detail["parameters"]):
        for name in PARAMETER_SPECS:
            assert parameters[name] == live[name], (name, parameters[name], live[name])
    assert all(exact.fullmatch(v) for k, v in row["parameters"].items() if re.match(r"-?\d", v)), row["parameters"]
    # The stored-backtest pages show money with its unit, to the quote's places (ADA_BTC: BTC, 8 places; the run
    # holds ADA), thousands separated, not the store's 12 raw places: 10000.000000000000 → "10,000.00000000 BTC".
    satoshi = D("0.00000001")
    assert row["amounts"]["initial_capital"] == f"{D(report['initial_capital']).quantize(satoshi):,f} BTC"
    assert row["amounts"]["final_equity"] == f"{D(report['final_equity']).quantize(satoshi):,f} BTC"
    assert row["amounts"]["fees_paid"] == f"{D(report['summary']['fees_paid']).quantize(satoshi):,f} BTC"
    assert re.fullmatch(r"\d{1,3}(,\d{3})*\.\d{8} BTC", row["amounts"]["final_equity"]), row["amounts"]
    assert detail["amounts"]["final_equity"] == row["amounts"]["final_equity"] and "trades" not in row["amounts"]
    shown = detail["amounts"]["trades"]
    assert report["trades"] and len(shown) == len(report["trades"])
    for trade, amounts in zip(report["trades"], shown, strict=True):
        assert amounts["quantity"] == f"{D(trade['quantity']).normalize():,f} ADA"
        assert amounts["entry_price"].endswith(" BTC") and D(amounts["entry_price"].split()[0]) > 0
        assert trade["exit_price"] is None or amounts["exit_price"].endswith(" BTC")
        profit = D(trade["profit_loss"]).quantize(satoshi)
        assert amounts["profit_loss"] == f"{'+' if profit > 0 else ''}{abs(profit) if profit == 0 else profit:,f} BTC"
        # what the /backtests/ page shows in its Duration and Exit reason columns, as the dashboard says them
        held = None if trade["exit_time"] is None else (trade["exit_time"] - trade["entry_time"]) // 60000
        if held is not None:  # whole minutes on a 5m grid: "10m", "1h 5m", "1d 3h 45m"
            days, hours, minutes = held // 1440, held % 1440 // 60, held % 60
            said = (f"{days}d " if days else "") + (f"{hours}h " if days or hours else "") + f"{minutes}m"
        assert amounts["duration"] == ("–" if held is None else said)
        reason = {"stop_loss": "stop-loss"}.get(trade["exit_reason"], trade["exit_reason"])
        assert amounts["exit_reason"] == ("–" if trade["exit_reason"] is None else reason)
    # the page's Profit factor and Sharpe cards, to 2 places as the command and the HTML report print them
    for key in ("profit_factor", "sharpe"):
        value = report["summary"][key]
        assert row["amounts"][key] == ("–" if value is None else f"{D(str(value)).quantize(D('0.01')):f}")
    assert admin_client.get("/api/backtests/", {"strategy": "nosuch"}).json()["count"] == 0
    assert admin_client.get("/api/backtests/", {"since": "not a date"}).status_code == 400
    assert admin_client.get("/api/backtests/999999/").status_code == 404


# *FIVE_MINUTE[:1], not FIVE_MINUTE[0]: without ../shared/data the module still collects (and is skipped).
@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "/nonexistent/ETH_BTC-5m.csv"], "no such file"),
        (["--data", "EMPTY"], "is empty"),
        (["--data", "HEADER_ONLY"], "no valid candles"),
        (["--data", "WRONGNAME"], "SYMBOL-INTERVAL.csv"),
        (["--data", *FIVE_MINUTE[:1], "--strategy", "nope"], "unknown strategy 'nope'"),
        (["--data", *FIVE_MINUTE[:1], "--param", "MAX_POSITION_PCT=0.9"], "MAX_POSITION_PCT: 0.9 is out of range"),
        (["--data", *FIVE_MINUTE[:1], "--param", "fast"], "expected NAME=VALUE"),
        (["--data", *FIVE_MINUTE[:1], "--param", "ema_fast=abc"], "ema_fast"),
        (["--data", *FIVE_MINUTE[:1], "--capital", "-5"], "--capital"),
        (["--data", *FIVE_MINUTE[:1], "--from", "yesterday"], "--from"),
        (["--data", *FIVE_MINUTE[:1], "DUPLICATE"], "two files replay the same symbol and interval"),
        (["--data", "SEVEN_MINUTES"], "AAA_USDT-7m.csv: 7m is not an exchange interval; MEXC spot has 1m, 5m, 15m"),
        (["--data", "SECONDS"], "AAA_USDT-1m.csv: 1700002800 is not a 1m open time in epoch ms: a time in seconds?"),
        # one rule for a typed number: what Python would read as 100, 0.15, 0.1, 10 and 7 is refused, saying the rule
        (["--data", *FIVE_MINUTE[:1], "--capital", "١٠٠"], "--capital='١٠٠': must be a number in 0.00000001–"),
        (["--data", *FIVE_MINUTE[:1], "--capital", "1e4"], "in ASCII digits 0-9 with at most one '.' point (no sign"),
        (["--data", *FIVE_MINUTE[:1], "--param", "MAX_POSITION_PCT=0.1_5"], "MAX_POSITION_PCT: '0.1_5' is " + RULE),
        (["--data", *FIVE_MINUTE[:1], "--param", "POSITION_SIZE_PCT=+0.1"], "POSITION_SIZE_PCT='+0.1': must be"),
        (["--data", *FIVE_MINUTE[:1], "--param", "ema_fast=1_0"], "parameter ema_fast='1_0' is not a number: ASCII"),
        (["--data", *FIVE_MINUTE[:1], "--seed", "٧"], "argument --seed: invalid value: '٧' is " + RULE),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, message):
    (tmp_path / "EMPTY_BTC-5m.csv").write_text("")
    (tmp_path / "HEADER_BTC-5m.csv").write_text("timestamp_ms,open,high,low,close,volume\n")
    (tmp_path / "wrong.csv").write_text("timestamp_ms,open,high,low,close,volume\n1,1,1,1,1,1\n")
    (tmp_path / "AAA_USDT-7m.csv").write_text("timestamp_ms,open,high,low,close,volume\n1,1,1,1,1,1\n")
    (tmp_path / "AAA_USDT-1m.csv").write_text("timestamp_ms,open,high,low,close,volume\n1700002800,1,1,1,1,1\n")
    names = {
        "EMPTY": tmp_path / "EMPTY_BTC-5m.csv",
        "HEADER_ONLY": tmp_path / "HEADER_BTC-5m.csv",
        "WRONGNAME": tmp_path / "wrong.csv",
        "SEVEN_MINUTES": tmp_path / "AAA_USDT-7m.csv",
        "SECONDS": tmp_path / "AAA_USDT-1m.csv",
        "DUPLICATE": tmp_path / "again" / Path(FIVE_MINUTE[0]).name,  # the same symbol and interval, elsewhere
    }
    names["DUPLICATE"].parent.mkdir()
    names["DUPLICATE"].symlink_to(FIVE_MINUTE[0])
    args = [str(names.get(a, a)) for a in args]
    done = processes.run(
        [sys.executable, "manage.py", "backtest", "--no-progress", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_risk_event_amounts_are_plain_decimal_strings(tmp_path):
    """A risk event's amounts in the JSON report: exact, no exponent (``0E-8``), no padding (``290.16836200``)."""
    report = _backtest(tmp_path, str(CANDLES / "ETH_BTC-5m.csv"))
    texts = [
        value
        for event in report["risk_events"]
        for value in [event["requested_quantity"], event["approved_quantity"], *event["details"].values()]
        if isinstance(value, str) and value[:1].isdigit()
    ]
    assert texts
    padded = [t for t in texts if "E" in t.upper() or ("." in t and t.endswith("0"))]
    assert not padded, padded[:5]
