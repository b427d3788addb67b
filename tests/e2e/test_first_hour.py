"""A trader's first hour (issue 22) through the real commands on a SQLite database of their own, as `make run` uses:
`manage.py serve` twice in a row (the second run carries the simulated market on from the last stored candle and
decides new candles at once, no data age below zero), a replay into that same database refused (another quote
currency), `make run` once more, the amounts as people and programs read them (risk_status, /api/status/, the
backtest summary, JSON and HTML report), and the dashboard in Chromium at 1280, 1366, 1440 and 1920 px with no table
cell clipped (measured in the page).

With UPDATE_README_SCREENSHOT=1 the browser test lets `make run`'s dashboard run for a minute at its own pace and
saves it as docs/make-run-1280x800.png, the README's first picture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from ground import amounts
from tests.support import processes
from tests.support.paths import CANDLES
from tests.support.processes import ROOT, Process, _spawn, _wait_for, free_port, wait_until
from trading.backtest_report import amounts as backtest_amounts

ARTIFACTS = ROOT / "artifacts" / "browser"
README_SCREENSHOT = ROOT / "docs" / "make-run-1280x800.png"
USER, PASSWORD = "admin", "first-hour-secret"  # the name ensure_admin gives the first admin
EXACT = re.compile(r"-?\d+(\.\d*[1-9])?")  # an exact decimal string: no exponent, no trailing zeros
USDT = r"-?\d{1,3}(,\d{3})*\.\d{2} USDT"  # an amount for people: thousands separated, to the cent


def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("PYTEST")}
    env.update(DATABASE_URL=f"sqlite:///{db}", PYTHONUNBUFFERED="1", CDB_ADMIN_USER=USER, CDB_ADMIN_PASSWORD=PASSWORD)
    return env


def _manage(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    done = processes.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _serve(env: dict[str, str], log_dir: Path, name: str, *args: str) -> tuple[Process, int]:
    """`make run`'s last step: migrate and ensure_admin first, then serve (its defaults unless ``args`` say)."""
    _manage(env, "migrate", "--noinput")
    _manage(env, "ensure_admin")
    port = free_port()
    server = _spawn(name, [sys.executable, "manage.py", "serve", "--port", str(port), *args], env, log_dir)
    _wait_for(server, lambda: "serving at" in server.output(), 60, "the serving line")
    return server, port


def _stop(server: Process) -> None:
    server.stop()  # SIGTERM, as Ctrl-C would: the server must finish its step and exit
    assert server.popen.returncode is not None and server.popen.returncode != -9, server.output()[-5000:]
    assert "Traceback" not in server.output(), server.output()[-20_000:]


def _query(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        return connection.execute(sql, args).fetchall()


def _one(db: Path, sql: str, *args):
    return _query(db, sql, *args)[0][0]


def _token(port: int) -> str:
    body = json.dumps({"username": USER, "password": PASSWORD}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/token/", data=body, headers={"Content-Type": "application/json"}
    )
    return json.load(urllib.request.urlopen(request, timeout=10))["token"]


def _get(port: int, path: str, token: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Token {token}"})
    return json.load(urllib.request.urlopen(request, timeout=30))


def _check_status(status: dict) -> None:
    """/api/status/: money, quantities and shares as exact decimal strings; one clock, said; no negative age."""
    account = status["account"]
    for key, value in account.items():
        if key in ("open_positions", "quote_decimals", "day_start", "quote"):
            continue
        assert isinstance(value, str) and EXACT.fullmatch(value), (key, value)
    assert (account["quote"], account["quote_decimals"]) == ("USDT", 2)
    assert status["clock"].startswith("simulated market: one 1m candle every")
    assert status["market_time_ms"] > status["wall_time_ms"] - 3_600_000  # the market's time, not a replay's
    assert status["freshness"] and all(type(f["age_sec"]) is int and f["age_sec"] >= 0 for f in status["freshness"])
    assert {f["symbol"] for f in status["freshness"]} == {"BTC_USDT", "ETH_USDT", "SOL_USDT", "XRP_USDT"}


@pytest.mark.shared_data
def test_make_run_twice_carries_on_and_a_replay_fits_in(tmp_path):
    db = tmp_path / "db.sqlite3"
    env = _env(db)

    # First run, faster than `make run` (a 1m candle every 0.1 s) until it has traded.
    first, _ = _serve(env, tmp_path, "run1", "--tick-seconds", "0.1")
    try:
        assert "starting 60 candles before now" in first.output()
        wait_until(lambda: _one(db, "SELECT COUNT(*) FROM execution_order") >= 2, timeout=120, message="orders")
    finally:
        _stop(first)
    last_stored = _one(db, "SELECT MAX(timestamp) FROM marketdata_candle")
    decided_before = _one(db, "SELECT COUNT(*) FROM risk_riskevent")

    # Second run, exactly `make run`: the market carries on after the last stored candle and is decided at once.
    second, port = _serve(env, tmp_path, "run2")
    try:
        started = time.monotonic()
        assert "carrying on from its last stored candle: one 1m candle every 1 s of wall time" in second.output()
        wait_until(
            lambda: _one(db, "SELECT COUNT(*) FROM marketdata_candle WHERE timestamp > ?", last_stored) >= 8,
            timeout=30,
            message="new candles after the last stored one",
        )
        assert time.monotonic() - started < 30
        token = _token(port)
        for _ in range(3):  # the age stays at or above zero as the clock moves
            seen = _get(port, "/api/status/", token)
            _check_status(seen)
            wait_until(
                lambda seen=seen: _get(port, "/api/status/", token)["market_time_ms"] > seen["market_time_ms"],
                timeout=10,
                message="the market clock to move",
            )
        status = _get(port, "/api/status/", token)
        assert status["market_time_ms"] > last_stored
        alerts = _get(port, "/api/alerts/?page_size=100", token)["results"]
        assert all(a["timestamp"] >= last_stored - 86_400_000 for a in alerts)  # market time, not wall time
        # what people read of the decisions: the alerts served, every risk event's and order's reason
        said = [a["message"] for a in alerts] + [r for (r,) in _query(db, "SELECT reason FROM risk_riskevent")]
        said += [r for (r,) in _query(db, "SELECT reason FROM execution_order")]
        text = "\n".join(said)
        assert not re.search(r"\d\.\d*000(?!\d)", text), text  # no "194.177100930000"
        assert not re.search(r"\d [A-Z]+_[A-Z]+\b", text), text  # "0.5 XRP", never "0.5 XRP_USDT"
        assert re.search(r"^approved [\d,.]+ [A-Z]+ at [\d,.]+ USDT$", text, re.M), text  # units: base, quote
        risk = _manage(env, "risk_status").stdout
        assert re.search(rf"^Equity {USDT}  cash {USDT}  exposure {USDT} \(", risk, re.M), risk
        position = (
            rf"^  [A-Z]+_USDT +[\d,.]+ ([A-Z]+) @ [\d,.]+ USDT  last [\d,.]+ USDT  unrealized before fees [+]?{USDT}$"
        )
        held = [m.group(1) for m in re.finditer(position, risk, re.M)]  # "0.5 XRP @ 0.565288 USDT"
        assert held and all(f"{base}_USDT" in risk for base in held), risk
        iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"  # ISO 8601 UTC
        assert re.search(rf"^Trading state: ACTIVE since {iso} \(market time\)", risk, re.M), risk
        assert "000000" not in risk.split("Parameters:")[0]  # no "10155.57963252087875700000000"
    finally:
        _stop(second)
    assert "already stored and decided" not in second.output()
    assert _one(db, "SELECT COUNT(*) FROM risk_riskevent") >= decided_before
    newest = _one(db, "SELECT MAX(timestamp) FROM marketdata_candle")
    assert newest > last_stored

    # A replay of recorded candles into the same database (a BTC-quoted pair from 2018) is refused: it would trade
    # BTC with the USDT account (tests/e2e/test_replay_fits_account.py: the README's replay, into a database of its
    # own). Then `make run` again.
    data = tmp_path / "ETH_BTC-5m.csv"
    data.write_text("".join((CANDLES / "ETH_BTC-5m.csv").read_text().splitlines(keepends=True)[:301]))
    replay = processes.run(
        [sys.executable, "manage.py", "run_feed", "--source", "replay", "--data", str(data), "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert replay.returncode == 2 and "replay.sqlite3" in replay.stderr, replay.stdout + replay.stderr
    assert _one(db, "SELECT COUNT(*) FROM marketdata_candle WHERE symbol = 'ETH_BTC'") == 0
    third, port = _serve(env, tmp_path, "run3")
    try:
        assert "carrying on from its last stored candle" in third.output()
        wait_until(
            lambda: _one(db, "SELECT COUNT(*) FROM marketdata_candle WHERE timestamp > ?", newest) >= 4,
            timeout=30,
            message="the simulated market going on after the replay",
        )
        token = _token(port)
        _check_status(_get(port, "/api/status/", token))
    finally:
        _stop(third)


SIM_SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT", "XRP_USDT")


def test_a_first_run_stopped_during_its_backfill_carries_on_cleanly(tmp_path):
    """`make run` stopped (SIGTERM, as Ctrl-C) while its first backfill is publishing, then `make run` again: the
    second run completes the backfill at once and goes on, each symbol's candles without a gap, nothing published
    or decided twice, no negative age (issue 22's review). A longer backfill than make run's 60 so the stop falls
    inside it on a fast machine too."""
    db = tmp_path / "db.sqlite3"
    env = _env(db)
    backfill = 200
    first, _ = _serve(env, tmp_path, "run1", "--backfill", str(backfill))
    try:
        wait_until(lambda: _one(db, "SELECT COUNT(*) FROM marketdata_candle") >= 8, timeout=60, message="a backfill")
    finally:
        _stop(first)
    stored = dict(_query(db, "SELECT symbol, COUNT(*) FROM marketdata_candle GROUP BY symbol"))
    assert set(stored) == set(SIM_SYMBOLS) and len(set(stored.values())) == 1, stored  # a stop ends a whole step
    done = stored["BTC_USDT"]
    assert 2 <= done < backfill, stored  # stopped inside its backfill
    first_candle = _one(db, "SELECT MIN(timestamp) FROM marketdata_candle")

    second, port = _serve(env, tmp_path, "run2", "--backfill", str(backfill))
    try:
        assert (
            "carrying on from its last stored candle, first completing the backfill a stopped run left short "
            f"({backfill - done} candles at once): one 1m candle every 1 s" in second.output()
        ), second.output()[-3000:]
        wait_until(
            lambda: (
                _one(db, "SELECT MIN(n) FROM (SELECT COUNT(*) AS n FROM marketdata_candle GROUP BY symbol)")
                >= backfill + 3
            ),
            timeout=120,
            message="the backfill completed and the market going on",
        )
        token = _token(port)
        _check_status(_get(port, "/api/status/", token))  # its time where the first run's backfill would have led
    finally:
        _stop(second)
    assert "already stored and decided" not in second.output()
    for symbol, count, first_time, last_time in _query(
        db, "SELECT symbol, COUNT(*), MIN(timestamp), MAX(timestamp) FROM marketdata_candle GROUP BY symbol"
    ):
        assert first_time == first_candle and (last_time - first_time) // 60_000 + 1 == count, symbol  # no gap
    twice = _query(
        db, "SELECT signal_id, COUNT(*) FROM risk_riskevent WHERE signal_id != '' GROUP BY 1 HAVING COUNT(*) > 1"
    )
    assert twice == []  # no signal decided twice
    assert _query(db, "SELECT COUNT(*) FROM trading_signal") == _query(
        db, "SELECT COUNT(DISTINCT signal_id) FROM trading_signal"
    )


def test_a_step_cut_short_is_completed_for_the_symbols_it_missed(tmp_path):
    """A run killed between two symbols' candles of one step (a stop finishes its step; a kill or a crash does not):
    the next run gives the lagging symbol its missing candle and publishes nothing again for the others."""
    db = tmp_path / "db.sqlite3"
    env = _env(db)
    _manage(env, "migrate", "--noinput")
    sim = ("run_feed", "--source", "sim", "--tick-seconds", "0.01")
    _manage(env, *sim, "--backfill", "6", "--steps", "0")
    newest = _one(db, "SELECT MAX(timestamp) FROM marketdata_candle")
    with sqlite3.connect(db) as connection:  # the cut: ETH_USDT's and XRP_USDT's candles of the last step missing
        connection.execute(
            "DELETE FROM marketdata_candle WHERE symbol IN ('ETH_USDT', 'XRP_USDT') AND timestamp = ?", (newest,)
        )
    again = _manage(env, *sim, "--backfill", "6", "--steps", "2")
    assert "first completing the backfill a stopped run left short (1 candle at once)" in again.stdout, again.stdout
    rows = _query(db, "SELECT symbol, COUNT(*), COUNT(DISTINCT timestamp), MIN(timestamp), MAX(timestamp) "
                      "FROM marketdata_candle GROUP BY symbol")  # fmt: skip
    assert {r[0] for r in rows} == set(SIM_SYMBOLS)
    for symbol, count, distinct, first_time, last_time in rows:
        assert count == distinct == 8 and (last_time - first_time) // 60_000 + 1 == 8, (symbol, count, distinct)
    assert "already stored" not in again.stdout + again.stderr


@pytest.mark.shared_data
def test_amounts_in_the_backtest_summary_and_reports(tmp_path):
    """For people the quote's places (BTC: 8) and ISO 8601 UTC times; for programs every JSON key as before."""
    env = _env(tmp_path / "db.sqlite3")
    out_json, out_html = tmp_path / "run.json", tmp_path / "run.html"
    files = [str(CANDLES / "ETH_BTC-5m.csv")]
    done = _manage(
        env, "backtest", "--data", *files, "--capital", "1", "--json", str(out_json), "--html", str(out_html)
    )
    btc = r"\d{1,3}(,\d{3})*\.\d{8} BTC"
    for label in ("initial capital", "final equity", "fees paid"):
        assert re.search(rf"^{label} +{btc}$", done.stdout, re.M), done.stdout
    assert re.search(rf"ETH_BTC +trades +\d+ +win +[\d.]+ % +P&L after fees [+-]?{btc}$", done.stdout, re.M), (
        done.stdout
    )
    document = json.loads(out_json.read_text())
    assert {
        "strategy",
        "parameters",
        "files",
        "initial_capital",
        "final_equity",
        "cash",
        "realized_pnl",
        "unrealized_pnl",
        "fees",
        "candles",
        "seconds",
        "summary",
        "trades",
        "orders",
        "equity_curve",
        "risk_events",
        "alerts",
        "rejected_rows",
    } <= set(document)
    assert document["final_equity"] == format(Decimal(document["final_equity"]).normalize(), "f")  # exact, as before
    # the summary's *_pct keep their meaning (percent, as scripts and stored runs read them) and the report says so
    units, summary = document["units"], document["summary"]
    for key in ("total_return_pct", "max_drawdown_pct", "time_in_market_pct"):
        assert units[f"summary.{key}"].startswith("percent (12.5 = 12.5 %)"), units
    assert units["summary.win_rate"].startswith("fraction")
    # before or after fees, for every P&L (keys unchanged): the printed per-symbol P&L and the HTML columns say it
    for key in ("realized_pnl", "summary.realized_pnl", "unrealized_pnl"):
        assert units[key].startswith("before fees"), units
    for key in ("trades.profit_loss", "summary.per_symbol.*.profit_loss"):
        assert units[key].startswith("after fees"), units
    assert "after fees" in units["trades.profit_loss_percent"]
    assert ">P&amp;L after fees (BTC)</th>" in out_html.read_text()
    assert ">P&amp;L % after fees</th>" in out_html.read_text()
    growth = Decimal(document["final_equity"]) / Decimal(document["initial_capital"]) - 1
    # an exact decimal string
    assert summary["total_return_pct"] == amounts.plain(repr(float(summary["total_return_pct"])))
    assert float(summary["total_return_pct"]) == pytest.approx(float(growth * 100))
    # the command, the HTML report and the /backtests/ page print one percentage alike (2 places)
    shown = amounts.percent(summary["time_in_market_pct"], fraction=False)
    assert re.search(rf"^time in market +{re.escape(shown)}$", done.stdout, re.M), done.stdout
    assert f"<b>Time in market</b><span>{shown}</span>" in out_html.read_text()
    page = out_html.read_text()
    table = page.split("<h2>Trades</h2>")[1].split("</table>")[0]
    assert re.search(r"<td title='\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'>", table)  # ISO 8601 UTC
    assert not re.search(r">\d{13}<", table)  # no epoch milliseconds for people
    assert re.search(rf"<span>{btc}</span>", page)  # the cards
    assert 'rel="icon" href="data:image/svg+xml,' in page
    # one shape per value: ratios to 2 places and the run time to the millisecond in the command and the HTML report
    # as the /backtests/ pages show them (the API's amounts, which the page prints as they come); exit reasons for
    # people (was 0.418 / 0.42, 0.252 s / 0.2522 s, stop_loss / stop-loss)
    shown = backtest_amounts(document)
    for label, key in (("profit factor", "profit_factor"), ("sharpe", "sharpe")):
        assert re.fullmatch(r"-?\d+\.\d{2}|–", shown[key]), shown
        assert re.search(rf"^{label} +{re.escape(shown[key])}$", done.stdout, re.M), done.stdout
        assert f"<b>{label.capitalize()}</b><span>{shown[key]}</span>" in page
    assert re.fullmatch(r"\d+\.\d{3} s", shown["seconds"]), shown
    assert re.search(rf"^candles +{document['candles']} in {re.escape(shown['seconds'])}$", done.stdout, re.M)
    assert f"<span>{document['candles']} in {shown['seconds']}</span>" in page
    reasons = re.findall(r"<td title='[^']*'>([^<]*)</td></tr>", table)
    assert reasons == [t["exit_reason"] for t in shown["trades"]] and "stop_loss" not in table, reasons


def test_a_thin_volume_reason_gives_the_share_in_percent_as_every_amount(tmp_path):
    """A partial fill's reason says the share of the candle's volume as ``percent`` does (``12.50 %``): it said
    ``12%`` for a share of 0.125, rounded and unlike every other percentage of the product."""
    env = {**_env(tmp_path / "db.sqlite3"), "PAPER_MAX_VOLUME_SHARE": "0.125"}
    out_json = tmp_path / "run.json"
    _manage(env, "backtest", "--data", str(CANDLES / "ETH_BTC-5m.csv"), "--capital", "10", "--json", str(out_json))
    reasons = [o["reason"] for o in json.loads(out_json.read_text())["orders"] if o["status"] == "PARTIALLY_FILLED"]
    assert reasons, "no partial fill: the test's capital no longer meets thin volume"
    pattern = r"thin volume: filled [\d,.]+ ETH of [\d,.]+ ETH ordered \(12\.50 % of the candle's volume [\d,.]+ ETH\)"
    assert all(re.fullmatch(pattern, reason) for reason in reasons), reasons[:3]


# --- the dashboard in a real browser ---------------------------------------------------------------------------

CLIPPED = """() => {
  const out = [];
  const visible = (el) => el.offsetParent !== null;
  for (const td of document.querySelectorAll("table td, table th")) {
    if (visible(td) && td.scrollWidth > td.clientWidth + 1) out.push(`${td.closest("table").id}: ${td.textContent}`);
  }
  for (const table of document.querySelectorAll(".panel table")) {
    const panel = table.closest(".panel");
    if (visible(table) && table.offsetWidth > panel.clientWidth) out.push(`table ${table.id} wider than its panel`);
  }
  const lines = (el) => { const r = document.createRange(); r.selectNodeContents(el);
    return new Set([...r.getClientRects()].map((q) => Math.round(q.top))).size; };
  for (const td of document.querySelectorAll("td.time")) {
    if (visible(td) && lines(td) > 1) out.push(`wrapped: ${td.textContent}`);
  }
  for (const big of document.querySelectorAll(".card .big")) {
    const cut = lines(big) > 1 || big.scrollWidth > big.clientWidth + 1;
    if (big.textContent && cut) out.push(`card ${big.id}: ${big.textContent}`);
  }
  return out;
}"""


QTY_AND_REASON = """() => [...document.querySelectorAll("#order-results tbody tr")].map(
  (tr) => [tr.querySelector("td.qty").textContent, tr.querySelector("td.reason").textContent])"""


@pytest.mark.browser
def test_make_run_dashboard_fits_from_1280_px(tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect
    readme = os.environ.get("UPDATE_README_SCREENSHOT") == "1"
    db = tmp_path / "db.sqlite3"
    # `make run` as it is for the README's picture (a minute at its own pace); faster otherwise.
    server, port = _serve(_env(db), tmp_path, "serve", *(() if readme else ("--tick-seconds", "0.1")))
    started = time.monotonic()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        wait_until(lambda: _one(db, "SELECT COUNT(*) FROM execution_order") >= 3, timeout=120, message="orders")
        if readme:
            time.sleep(max(0.0, 60 - (time.monotonic() - started)))
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True, args=["--no-sandbox"]
            )
            for width, height in ((1280, 800), (1366, 768), (1440, 900), (1920, 1080)):
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
                page.on("requestfailed", lambda r, errors=errors: errors.append(f"{r.url}: {r.failure}"))
                page.on("response", lambda r, errors=errors: r.status >= 400 and errors.append(f"{r.url}: {r.status}"))
                page.goto(f"http://127.0.0.1:{port}/")
                page.fill("#id_username", USER)
                page.fill("#id_password", PASSWORD)
                page.click("#login-submit")
                page.wait_for_url(f"http://127.0.0.1:{port}/")
                expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=20_000)
                expect(page.locator("#order-results tbody tr").first).to_be_visible(timeout=20_000)
                expect(page.locator("#price-chart")).to_have_attribute("data-state", "ready", timeout=20_000)
                expect(page.locator("#clock-note")).to_contain_text("simulated market: one 1m candle every")
                expect(page.locator("#equity")).to_have_text(re.compile(r"^\d{1,3}(,\d{3})*\.\d{2}$"))
                fees = page.locator("#order-results tbody tr td:nth-child(7)").all_text_contents()
                assert fees and all(re.fullmatch(r"\d+\.\d{2}", f) for f in fees), fees
                reasons = " ".join(page.locator("#order-results td.reason").all_text_contents())
                assert not re.search(r"\d\.\d*000(?!\d)", reasons), reasons  # not the store's 12 places
                assert not re.search(r"\d [A-Z]+_[A-Z]+\b", reasons), reasons  # a unit is an asset, not the pair
                # a partial fill's Qty says what its reason says: "filled A XRP of B XRP ordered" → "A of B"
                rows = page.evaluate(QTY_AND_REASON)
                partial = [(q, r) for q, r in rows if r.startswith("thin volume")]
                for qty, reason in partial:
                    filled, ordered = re.match(
                        r"thin volume: filled ([\d,.]+) \w+ of ([\d,.]+) \w+ ordered", reason
                    ).groups()
                    assert qty == f"{filled} of {ordered}", (qty, reason)
                # the buttons follow the state: ACTIVE → Halt only
                expect(page.locator("#halt-button")).to_be_enabled()
                expect(page.locator("#release-button")).to_be_disabled()
                for _ in range(2):  # a few pushes more: each moves the market clock
                    expect(page.locator("#clock-market")).not_to_have_text(
                        page.locator("#clock-market").text_content(), timeout=20_000
                    )
                assert page.evaluate(CLIPPED) == [], f"{width}px"
                shot = ARTIFACTS / f"make-run-{width}x{height}.png"
                page.screenshot(path=str(shot))
                if readme and width == 1280:
                    shutil.copyfile(shot, README_SCREENSHOT)
                favicon = page.evaluate("fetch('/favicon.ico').then((r) => [r.status, r.headers.get('content-type')])")
                assert favicon == [200, "image/svg+xml"]
                if width == 1920:  # halt, then release: each button only in the state it changes, confirms coloured so
                    page.click("#halt-button")
                    expect(page.locator("#state-confirm")).to_have_class("danger")
                    page.fill("#state-reason-input", "A" * 500)  # the longest reason, unbroken (a pasted URL)
                    page.click("#state-confirm")
                    expect(page.locator("#state")).to_have_text("HALTED")
                    expect(page.locator("#state-reason")).to_have_text("reason: " + "A" * 500)
                    page_width = page.evaluate("document.documentElement.scrollWidth")  # was 4585: the card grew
                    assert page_width == page.evaluate("document.documentElement.clientWidth"), page_width
                    expect(page.locator("#halt-button")).to_be_disabled()
                    page.click("#release-button")
                    expect(page.locator("#state-confirm")).to_have_class("primary")
                    # someone else releases first (the shell): this release finds trading ACTIVE and says so
                    released = _manage(_env(db), "release", "--reason", "from the shell", "--actor", "ops").stdout
                    assert released.startswith("Trading ACTIVE: from the shell (by ops)"), released
                    page.click("#state-confirm")
                    expect(page.locator("#state-notice")).to_contain_text("Trading is ACTIVE already")
                    expect(page.locator("#state")).to_have_text("ACTIVE")
                    audit = _query(db, "SELECT actor, action FROM risk_auditlog ORDER BY id")[-3:]
                    assert audit == [(USER, "state:halted"), ("ops", "state:active"), (USER, "state:active_already")]
                    page.reload()  # the shell's release is another process: the page hears of it from the store
                    first_alert = page.locator("#alerts tbody tr").first  # newest (market time) first
                    expect(first_alert).to_contain_text("Trading ACTIVE: from the shell (ops)")
                assert not errors, errors
                context.close()
            browser.close()
    finally:
        _stop(server)
