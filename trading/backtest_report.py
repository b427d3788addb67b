"""Backtest reports: the JSON document, the summary statistics and a self-contained offline HTML page."""

from __future__ import annotations

import html
import json
import math
import re
import statistics
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from ground.amounts import (
    base_of,
    common_quote,
    duration,
    exit_reason,
    iso_utc,
    money,
    percent,
    plain,
    price,
    quantity,
    quote_of,
    ratio,
    seconds,
)
from risk.engine import MIN_NOTIONAL

from .backtest import Result

YEAR_MS = 365 * 24 * 3600 * 1000


def _max_drawdown_pct(curve: list[tuple[int, Decimal]]) -> float:
    peak, worst = None, 0.0
    for _, equity in curve:
        peak = equity if peak is None or equity > peak else peak
        if peak > 0:
            worst = max(worst, float((peak - equity) / peak))
    return worst * 100


def _sharpe(curve: list[tuple[int, Decimal]]) -> float | None:
    if len(curve) < 3:
        return None
    returns = [float(b / a - 1) for (_, a), (_, b) in zip(curve, curve[1:], strict=False) if a > 0]
    deviation = statistics.pstdev(returns) if len(returns) > 1 else 0.0
    if deviation == 0:
        return None
    step = statistics.median(b - a for (a, _), (b, _) in zip(curve, curve[1:], strict=False)) or 1
    return statistics.fmean(returns) / deviation * math.sqrt(YEAR_MS / step)


FILLED = ("FILLED", "PARTIALLY_FILLED")
CUT_SHARE = 0.5  # warn when more than half of the entries filled less than they asked for


def capital_warnings(result: Result) -> list[str]:
    """A newcomer's trap: a capital far above what the candles' volumes can absorb (``--capital 10000`` on
    BTC-quoted pairs is 10,000 BTC), so PAPER_MAX_VOLUME_SHARE cuts most entries. Says so, and suggests a capital
    at the scale the fills reached. Counts the entries that filled (fully or in part): a cancelled, failed or
    still waiting entry was never cut by the volume share."""
    entries = [o for o in result.orders if o.purpose == "entry" and o.status in FILLED and o.quantity > 0]
    cut = [o for o in entries if o.filled_quantity < o.quantity]
    if not entries or len(cut) <= CUT_SHARE * len(entries):
        return []
    ratios = sorted(float(o.filled_quantity / o.quantity) for o in cut)
    suggested = float(result.initial_capital) * max(ratios[len(ratios) // 2], 1e-12)
    magnitude = 10 ** math.floor(math.log10(suggested))
    suggested = math.floor(suggested / magnitude) * magnitude
    quotes = sorted({quote_of(o.symbol) for o in entries})
    capital = money(result.initial_capital, quotes[0], unit=True) if len(quotes) == 1 else plain(result.initial_capital)
    return [
        f"{len(cut)} of {len(entries)} entries were cut by PAPER_MAX_VOLUME_SHARE (the share of a candle's volume a "
        f"fill may take): a capital of {capital} is counted in the quote currency ({', '.join(quotes)}), "
        f"too large for these markets. Try --capital {suggested:g} or less."
    ]


# Why the risk layers refused an entry, by the layer that refused it (``risk.engine``), as a person reads it.
REFUSED_BECAUSE = {
    "position": "no room under the position limit (MAX_POSITION_PCT)",
    "exposure": "the exposure limit reached (MAX_EXPOSURE_PCT)",
    "cash": "not enough cash",
    "circuit_breaker": "the circuit breaker (slippage or spread)",
    "state": "trading halted or paused",
    "drawdown": "the daily drawdown limit (MAX_DAILY_DRAWDOWN_PCT)",
    "data_stale": "market data stale (DATA_STALE_TIMEOUT_SEC)",
    "throttle": "too many orders a minute (MAX_ORDERS_PER_MINUTE)",
    "cooldown": "cooling down after a stop-loss (COOLDOWN_AFTER_STOP_MIN)",
    "watchlist": "not on the watch list (SYMBOL_WHITELIST)",
    "size": "too large for an order",
    "input": "invalid signal",
}


def refused_entries(document: dict) -> tuple[int, str]:
    """How many entries the risk layers refused and why, from the report's risk events: ``(3, "below the minimum
    order value 5.00 USDT")``, ``(3, "2 not enough cash, 1 the circuit breaker (slippage or spread)")``, ``(0, "")``.
    An entry below the market's minimum order value is not placed (as live): a small capital can leave a run without
    a single order, and this says why."""
    reasons: dict[str, int] = {}
    for event in document.get("risk_events", []):
        details = event.get("details") or {}
        if event["decision"] != "REJECT" or details.get("side") != "BUY":
            continue
        layer = event["layer"]
        if layer == "min_notional":
            quote = quote_of(event["symbol"])
            why = f"below the minimum order value {money(MIN_NOTIONAL.get(quote), quote, unit=True)}"
        else:
            why = REFUSED_BECAUSE.get(layer, layer)
        reasons[why] = reasons.get(why, 0) + 1
    if len(reasons) <= 1:
        return sum(reasons.values()), next(iter(reasons), "")
    ranked = sorted(reasons.items(), key=lambda item: -item[1])  # the most frequent first, else as first met
    return sum(reasons.values()), ", ".join(f"{n} {why}" for why, n in ranked)


def refused_text(document: dict) -> str:
    """``3 entries refused: below the minimum order value 5.00 USDT`` ("" for none), as the HTML report says it."""
    count, because = refused_entries(document)
    return f"{count} {'entry' if count == 1 else 'entries'} refused by the risk layers: {because}" if count else ""


def summary(result: Result) -> dict:
    closed = result.closed
    wins = [c for c in closed if c.profit_loss > 0]
    gross_profit = sum((c.profit_loss for c in wins), Decimal(0))
    gross_loss = -sum((c.profit_loss for c in closed if c.profit_loss < 0), Decimal(0))
    per_symbol: dict[str, dict] = {}
    for item in closed:
        entry = per_symbol.setdefault(item.lot.symbol, {"trades": 0, "wins": 0, "profit_loss": Decimal(0)})
        entry["trades"] += 1
        entry["wins"] += item.profit_loss > 0
        entry["profit_loss"] += item.profit_loss
    filled = [o for o in result.orders if o.status in FILLED]
    return {
        "total_return_pct": float((result.final_equity / result.initial_capital - 1) * 100),
        "max_drawdown_pct": _max_drawdown_pct(result.equity_curve),
        "trades": len(closed),
        "open_trades": sum(len(lots) for lots in result.open_lots.values()),
        "orders": len(result.orders),
        "orders_filled": len(filled),
        "win_rate": len(wins) / len(closed) if closed else None,
        "profit_factor": float(gross_profit / gross_loss) if gross_loss > 0 else None,
        "sharpe": _sharpe(result.equity_curve),
        "fees_paid": plain(result.book.fees),
        "realized_pnl": plain(result.book.realized_pnl),
        "time_in_market_pct": 100 * sum(result.in_market) / len(result.in_market) if result.in_market else 0.0,
        "trading_state": result.trading_state,
        "warnings": capital_warnings(result),
        "per_symbol": {
            symbol: {
                "trades": item["trades"],
                "win_rate": item["wins"] / item["trades"],
                "profit_loss": plain(item["profit_loss"]),
            }
            for symbol, item in sorted(per_symbol.items())
        },
    }


# What the report's numbers are in, written into every report (``units``). The summary's three ``*_pct`` keys are in
# percent (12.5 = 12.5 %) where the live system's ``_pct`` are fractions: scripts, stored runs and optimization
# studies read them so (issue 19: the report keeps every key and its meaning), so they keep it and say so here.
UNITS = {
    "summary.total_return_pct": "percent (12.5 = 12.5 %), not a fraction as the live system's _pct",
    "summary.max_drawdown_pct": "percent (12.5 = 12.5 %), not a fraction as the live system's _pct",
    "summary.time_in_market_pct": "percent (12.5 = 12.5 %), not a fraction as the live system's _pct",
    "summary.win_rate": "fraction (0.5 = 50 %)",
    "summary.per_symbol.*.win_rate": "fraction (0.5 = 50 %)",
    "trades.profit_loss_percent": "percent (-1.25 = -1.25 %), after fees, of the entry's cost with its fee",
    "money": "exact decimal strings in the quote currency of the files' symbols (initial_capital, final_equity, cash, "
    "realized_pnl, unrealized_pnl, fees, prices, profit_loss, equity_curve values)",
    "realized_pnl": "before fees: what the sales fetched less the cost of what they sold (fees: all fees paid)",
    "summary.realized_pnl": "before fees, as realized_pnl",
    "unrealized_pnl": "before fees: the holdings at the last closes less their cost",
    "trades.profit_loss": "after fees: the entry's and the exit's",
    "summary.per_symbol.*.profit_loss": "after fees: the sum of the symbol's closed trades' profit_loss",
    "quantity": "exact decimal strings in the symbol's base asset",
    "times": "epoch milliseconds UTC on the market clock (the candles' time): entry_time, exit_time, timestamp, "
    "equity_curve times",
    "parameters": "as given; a risk parameter's _PCT is a fraction (0.05 = 5 %), as SPEC §4",
}


def exact_summary(figures: dict) -> dict:
    """The summary as the JSON report gives it: every ratio and percentage (floats in ``summary``, as the optimizer
    scores them) as the exact decimal string of that float (``float(text)`` gives it back), counts as integers, keys
    unchanged. Stored runs written before are read through it too (``cdb_project.api``)."""

    def exact(value):
        return plain(repr(value)) if isinstance(value, float) else value

    out = {key: exact(value) for key, value in figures.items()}
    if isinstance(figures.get("per_symbol"), dict):
        out["per_symbol"] = {
            symbol: {key: exact(value) for key, value in item.items()} for symbol, item in figures["per_symbol"].items()
        }
    return out


NUMBER = re.compile(r"-?\d+(\.\d*)?")


def parameter_text(value) -> str:
    """A parameter as /api/risk/parameters/ gives it: a number as its exact decimal string (``5.0`` → ``5``,
    ``0.50`` → ``0.5``), anything else as its text."""
    number = isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
    if number or (isinstance(value, str) and NUMBER.fullmatch(value.strip())):
        return plain(value)
    return str(value)


def report(result: Result, *, strategy: str, parameters: dict, files: list[str]) -> dict:
    """The JSON report. Money is a decimal string, so the accounting identity can be checked exactly."""
    trades = [
        {
            "trade_id": c.lot.trade_id,
            "symbol": c.lot.symbol,
            "side": "BUY",
            "entry_time": c.lot.entry_time,
            "entry_price": plain(c.lot.entry_price),
            "quantity": plain(c.lot.quantity),
            "exit_time": c.exit_time,
            "exit_price": plain(c.exit_price),
            "fees": plain(c.lot.entry_fees + c.exit_fees),
            "profit_loss": plain(c.profit_loss),
            "profit_loss_percent": plain(c.profit_loss_percent),
            "exit_reason": c.exit_reason,
            "exit_client_order_id": c.exit_client_order_id,
        }
        for c in result.closed
    ] + [
        {
            "trade_id": lot.trade_id,
            "symbol": lot.symbol,
            "side": "BUY",
            "entry_time": lot.entry_time,
            "entry_price": plain(lot.entry_price),
            "quantity": plain(lot.quantity),
            "exit_time": None,
            "exit_price": None,
            "fees": plain(lot.entry_fees),
            "profit_loss": None,
            "profit_loss_percent": None,
            "exit_reason": "open",
        }
        for lots in result.open_lots.values()
        for lot in lots
    ]
    book = result.book
    return {
        "strategy": strategy,
        "parameters": {k: parameter_text(v) for k, v in parameters.items()},
        "files": files,
        "initial_capital": plain(result.initial_capital),
        "final_equity": plain(result.final_equity),
        "cash": plain(book.cash),
        "realized_pnl": plain(book.realized_pnl),
        "unrealized_pnl": plain(book.unrealized_pnl(result.marks)),
        "fees": plain(book.fees),
        "candles": result.candles,
        "seconds": round(result.seconds, 4),
        "summary": exact_summary(summary(result)),
        "trades": trades,
        "orders": [
            {
                "client_order_id": o.client_order_id,
                "signal_id": o.signal_id,
                "symbol": o.symbol,
                "side": o.side,
                "purpose": o.purpose,
                "quantity": plain(o.quantity),
                "filled_quantity": plain(o.filled_quantity),
                "price": plain(o.price),
                "fees": plain(o.fees),
                "stop_loss": plain(o.stop_loss),
                "status": o.status,
                "reason": o.reason,
                "timestamp": o.timestamp,
                "risk_decision": o.decision,
                "risk_checks": o.risk_checks,
            }
            for o in result.orders
        ],
        "equity_curve": [[ts, plain(equity)] for ts, equity in result.equity_curve],
        "risk_events": result.risk_events,
        "alerts": result.alerts,
        "units": UNITS,
    }


STATIC = Path(__file__).resolve().parents[1] / "static"
LIGHTWEIGHT_CHARTS = (
    Path(__file__).resolve().parents[1]
    / "node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js"
)
HTML_CHART_SCRIPT = """
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  let peak = null;
  const drawdown = data.equity.map(([t, v]) => { const e = Number(v); peak = peak === null || e > peak ? e : peak;
    return [t, peak ? -100 * (peak - e) / peak : 0]; });
  window.cdbCharts = {
    equity: CdbPriceChart.line(document.getElementById("equity"), data.equity, {color: "#5fd38d", area: true}),
    drawdown: CdbPriceChart.line(document.getElementById("drawdown"), drawdown,
      {color: "#ff6b6b", area: true, precision: 2}),
    prices: {},
  };
  for (const [symbol, chart] of Object.entries(data.charts)) {
    const box = document.getElementById("price-" + symbol);
    const price = CdbPriceChart.create(box);
    price.setData(chart);
    window.cdbCharts.prices[symbol] = price;
  }
})();
"""


def _favicon() -> str:
    """The site's icon as a data URL: the report loads nothing."""
    return "data:image/svg+xml," + quote((STATIC / "cdb/favicon.svg").read_text(), safe="=:/")


def _inline_script(text: str) -> str:
    return "<script>" + text.replace("</script", "<\\/script") + "</script>"


def _chart_assets() -> str:
    """lightweight-charts (installed by ``npm ci``) and static/cdb/pricechart.js, inlined: the page loads nothing."""
    if not LIGHTWEIGHT_CHARTS.is_file():
        raise FileNotFoundError(f"{LIGHTWEIGHT_CHARTS} is missing: run `make install` (npm ci) for the --html charts")
    return _inline_script(LIGHTWEIGHT_CHARTS.read_text()) + _inline_script((STATIC / "cdb/pricechart.js").read_text())


def report_quote(document: dict) -> str:
    """The currency a report's money is in: the quote its files and trades share (``BTC`` for ``ETH_BTC-5m.csv``)."""
    return common_quote(
        [Path(p).name.split("-")[0] for p in document["files"]] + [t["symbol"] for t in document.get("trades", [])]
    )


def trade_amounts(trade: dict) -> dict[str, str | None]:
    """One trade's prices, quantity and P&L as people read them, each with its unit; its duration and exit reason
    as every page says them."""
    quote = quote_of(trade["symbol"])
    held = None if trade["exit_time"] is None else (trade["exit_time"] - trade["entry_time"]) / 1000
    return {
        "entry_price": price(trade["entry_price"], quote),
        "exit_price": price(trade["exit_price"], quote) if trade["exit_price"] is not None else None,
        "quantity": quantity(trade["quantity"], base_of(trade["symbol"])),
        "profit_loss": money(trade["profit_loss"], quote, unit=True, sign=True),
        "duration": duration(held),
        "exit_reason": exit_reason(trade["exit_reason"]),
    }


def amounts(document: dict, *, trades: bool = True) -> dict:
    """A report's money, ratios, run time and its trades' amounts as people read them (the stored-backtest pages, the
    HTML report and the command show these; the report keeps the exact numbers for programs)."""
    quote = report_quote(document)
    summary = document.get("summary", {})
    shown: dict = {
        "quote": quote,
        "initial_capital": money(document["initial_capital"], quote, unit=True),
        "final_equity": money(document["final_equity"], quote, unit=True),
        "fees_paid": money(summary.get("fees_paid"), quote, unit=True),
        "profit_factor": ratio(summary.get("profit_factor")),
        "sharpe": ratio(summary.get("sharpe")),
        "seconds": seconds(document.get("seconds")),
    }
    if trades:
        shown["trades"] = [trade_amounts(t) for t in document.get("trades", [])]
    return shown


def html_report(document: dict, charts: dict[str, dict] | None = None) -> str:
    """A single HTML file, self-contained and offline: the summary, equity and drawdown on dated axes, a candlestick
    chart per symbol with the run's fills (``charts``: ``trading.chart_service.backtest_chart`` per symbol) and the
    trades — drawn by the dashboard's own chart code and lightweight-charts, both inlined."""
    charts = charts or {}
    shown = amounts(document, trades=False)
    quote = shown["quote"]
    curve = document["equity_curve"]
    step = max(1, len(curve) // 5000)
    sampled = curve[::step] + ([curve[-1]] if curve and (len(curve) - 1) % step else [])
    s = document["summary"]

    def cell(value) -> str:
        return f"<td title='{html.escape(str(value))}'>{html.escape(str(value))}</td>"

    def pct(value) -> str:
        return percent(value, fraction=False)

    rows = "".join(
        "<tr>"
        + "".join(
            cell(v if v is not None else "–")
            for v in (
                t["symbol"],
                iso_utc(t["entry_time"]),
                a["entry_price"],
                a["quantity"],
                iso_utc(t["exit_time"]),
                a["exit_price"],
                a["profit_loss"],
                pct(t["profit_loss_percent"]),
                exit_reason(t["exit_reason"]),
            )
        )
        + "</tr>"
        for t, a in ((t, trade_amounts(t)) for t in document["trades"])
    )
    cards = "".join(
        f"<div class='card'><b>{html.escape(label)}</b><span>{html.escape(value)}</span></div>"
        for label, value in [
            ("Initial capital", shown["initial_capital"]),
            ("Final equity", shown["final_equity"]),
            ("Total return", pct(s["total_return_pct"])),
            ("Max drawdown", pct(s["max_drawdown_pct"])),
            ("Trades", str(s["trades"])),
            ("Entries refused", str(refused_entries(document)[0])),
            ("Win rate", percent(s["win_rate"], 1)),
            ("Profit factor", shown["profit_factor"]),
            ("Sharpe", shown["sharpe"]),
            ("Fees", shown["fees_paid"]),
            ("Time in market", pct(s["time_in_market_pct"])),
            ("Period", f"{iso_utc(curve[0][0]) if curve else '–'} → {iso_utc(curve[-1][0]) if curve else '–'}"),
            ("Candles", f"{document['candles']} in {shown['seconds']}"),
        ]
    )
    warnings = "".join(f"<p class='warning'>{html.escape(w)}</p>" for w in s.get("warnings", []))
    refused = refused_text(document)
    warnings += f"<p class='note'>{html.escape(refused)}</p>" if refused else ""
    state_changes = "".join(  # as live stores them: halts, releases, pauses (with who and why)
        f"<tr>{cell(iso_utc(a['timestamp']))}{cell(a['level'])}{cell(a['message'])}</tr>"
        for a in document.get("alerts", [])
        if a["code"] == "TRADING_STATE"
    )
    states = (
        "<table><thead><tr><th>Time (UTC)</th><th>Level</th><th>Change</th></tr></thead>"
        f"<tbody>{state_changes}</tbody></table>"
        if state_changes
        else "<p>ACTIVE throughout: no halt, pause or release.</p>"
    )
    prices = "".join(
        f"<h2>{html.escape(symbol)} <small>{html.escape(str(chart.get('interval') or ''))} bars · ▲ entry ▼ exit"
        f"</small></h2><div class='chart price' id='price-{html.escape(symbol)}'></div>"
        for symbol, chart in charts.items()
    )
    data = json.dumps({"equity": sampled, "charts": charts}).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest — {html.escape(document["strategy"])}</title>
<link rel="icon" href="{_favicon()}">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #e6e6e6; background: #10141a; }}
.cards {{ display: flex; flex-wrap: wrap; gap: .6rem; }}
.card {{ border: 1px solid #26313c; background: #182028; border-radius: .4rem; padding: .4rem .7rem;
         display: flex; flex-direction: column; }}
.card b {{ font-size: .75rem; color: #9aa7b4; }} small {{ color: #9aa7b4; font-weight: normal; }}
.chart {{ position: relative; height: 260px; border-radius: .3rem; overflow: hidden; }}
.chart.price {{ height: 480px; }}
.chart-tooltip {{ position: absolute; z-index: 5; pointer-events: none; background: rgba(24, 32, 40, .95);
  border: 1px solid #3a4a5a; border-radius: .3rem; padding: .3rem .5rem; font-size: .75rem; max-width: 22rem; }}
.note {{ border-left: 3px solid #5b8def; padding: .4rem .8rem; }}
.warning {{ background: rgba(240, 192, 90, .12); border-left: 3px solid #f0c05a; padding: .4rem .8rem; }}
table {{ border-collapse: collapse; font-size: .8rem; width: 100%; }}
th, td {{ border-bottom: 1px solid #26313c; padding: .2rem .4rem; text-align: left; }}
td {{ max-width: 24rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }}
</style></head><body>
<h1>Backtest: {html.escape(document["strategy"])}</h1>
<p>{html.escape(", ".join(document["files"]))}</p>
<div class="cards">{cards}</div>{warnings}
<noscript><p class="warning">The charts need JavaScript (inlined in this file; nothing is fetched).</p></noscript>
<h2>Equity</h2><div class="chart" id="equity"></div>
<h2>Drawdown (%)</h2><div class="chart" id="drawdown"></div>
{prices}
<h2>Trading state</h2>
{states}
<h2>Trades</h2>
<table><thead><tr><th>Symbol</th><th>Entry (UTC)</th><th>Entry price</th><th>Quantity</th><th>Exit (UTC)</th>
<th>Exit price</th>
<th title="after the entry's and the exit's fees">P&amp;L after fees ({html.escape(quote)})</th>
<th title="after fees, of the entry's cost with its fee">P&amp;L % after fees</th><th>Exit reason</th></tr></thead>
<tbody>{rows}</tbody></table>
<script type="application/json" id="report-data">{data}</script>
{_chart_assets()}
{_inline_script(HTML_CHART_SCRIPT)}
</body></html>
"""
