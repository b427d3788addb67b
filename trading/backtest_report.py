"""Backtest reports: the JSON document, the summary statistics and a self-contained offline HTML page."""

from __future__ import annotations

import html
import math
import statistics
from decimal import Decimal

from .backtest import Result

YEAR_MS = 365 * 24 * 3600 * 1000


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f") if value else "0"


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


CUT_SHARE = 0.5  # warn when more than half of the entries filled less than they asked for


def capital_warnings(result: Result) -> list[str]:
    """A newcomer's trap: a capital far above what the candles' volumes can absorb (``--capital 10000`` on
    BTC-quoted pairs is 10,000 BTC), so PAPER_MAX_VOLUME_SHARE cuts most entries. Says so, and suggests a capital
    at the scale the fills reached."""
    entries = [o for o in result.orders if o.purpose == "entry" and o.quantity > 0]
    cut = [o for o in entries if o.filled_quantity < o.quantity]
    if not entries or len(cut) <= CUT_SHARE * len(entries):
        return []
    ratios = sorted(float(o.filled_quantity / o.quantity) for o in cut)
    suggested = float(result.initial_capital) * max(ratios[len(ratios) // 2], 1e-12)
    magnitude = 10 ** math.floor(math.log10(suggested))
    suggested = math.floor(suggested / magnitude) * magnitude
    quotes = sorted({o.symbol.rsplit("_", 1)[-1] for o in entries})
    return [
        f"{len(cut)} of {len(entries)} entries were cut by PAPER_MAX_VOLUME_SHARE (the share of a candle's volume a "
        f"fill may take): a capital of {_money(result.initial_capital)} is counted in the quote currency "
        f"({', '.join(quotes)}), too large for these markets. Try --capital {suggested:g} or less."
    ]


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
    filled = [o for o in result.orders if o.status in ("FILLED", "PARTIALLY_FILLED")]
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
        "fees_paid": _money(result.book.fees),
        "realized_pnl": _money(result.book.realized_pnl),
        "time_in_market_pct": 100 * sum(result.in_market) / len(result.in_market) if result.in_market else 0.0,
        "trading_state": result.trading_state,
        "warnings": capital_warnings(result),
        "per_symbol": {
            symbol: {
                "trades": item["trades"],
                "win_rate": item["wins"] / item["trades"],
                "profit_loss": _money(item["profit_loss"]),
            }
            for symbol, item in sorted(per_symbol.items())
        },
    }


def report(result: Result, *, strategy: str, parameters: dict, files: list[str]) -> dict:
    """The JSON report. Money is a decimal string, so the accounting identity can be checked exactly."""
    trades = [
        {
            "trade_id": c.lot.trade_id,
            "symbol": c.lot.symbol,
            "side": "BUY",
            "entry_time": c.lot.entry_time,
            "entry_price": _money(c.lot.entry_price),
            "quantity": _money(c.lot.quantity),
            "exit_time": c.exit_time,
            "exit_price": _money(c.exit_price),
            "fees": _money(c.lot.entry_fees + c.exit_fees),
            "profit_loss": _money(c.profit_loss),
            "profit_loss_percent": _money(c.profit_loss_percent),
            "exit_reason": c.exit_reason,
        }
        for c in result.closed
    ] + [
        {
            "trade_id": lot.trade_id,
            "symbol": lot.symbol,
            "side": "BUY",
            "entry_time": lot.entry_time,
            "entry_price": _money(lot.entry_price),
            "quantity": _money(lot.quantity),
            "exit_time": None,
            "exit_price": None,
            "fees": _money(lot.entry_fees),
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
        "parameters": {k: str(v) for k, v in parameters.items()},
        "files": files,
        "initial_capital": _money(result.initial_capital),
        "final_equity": _money(result.final_equity),
        "cash": _money(book.cash),
        "realized_pnl": _money(book.realized_pnl),
        "unrealized_pnl": _money(book.unrealized_pnl(result.marks)),
        "fees": _money(book.fees),
        "candles": result.candles,
        "seconds": round(result.seconds, 4),
        "summary": summary(result),
        "trades": trades,
        "orders": [
            {
                "client_order_id": o.client_order_id,
                "signal_id": o.signal_id,
                "symbol": o.symbol,
                "side": o.side,
                "purpose": o.purpose,
                "quantity": _money(o.quantity),
                "filled_quantity": _money(o.filled_quantity),
                "price": _money(o.price),
                "fees": _money(o.fees),
                "status": o.status,
                "reason": o.reason,
                "timestamp": o.timestamp,
                "risk_decision": o.decision,
                "risk_checks": o.risk_checks,
            }
            for o in result.orders
        ],
        "equity_curve": [[ts, _money(equity)] for ts, equity in result.equity_curve],
        "risk_events": result.risk_events,
        "alerts": result.alerts,
    }


def _polyline(points: list[tuple[float, float]], width: int, height: int, color: str) -> str:
    if len(points) < 2:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 60) / ((x1 - x0) or 1)
    sy = (height - 30) / ((y1 - y0) or 1)
    path = " ".join(f"{50 + (x - x0) * sx:.1f},{height - 15 - (y - y0) * sy:.1f}" for x, y in points)
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">'
        f'<text x="2" y="14" class="axis">{y1:.6g}</text><text x="2" y="{height - 4}" class="axis">{y0:.6g}</text>'
        f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/></svg>'
    )


def html_report(document: dict) -> str:
    """A single HTML file: equity and drawdown charts as inline SVG, the summary and the trades. No network."""
    curve = [(ts, float(eq)) for ts, eq in document["equity_curve"]]
    step = max(1, len(curve) // 2000)
    sampled = curve[::step] + ([curve[-1]] if curve and (len(curve) - 1) % step else [])
    peak, drawdown = None, []
    for ts, equity in sampled:
        peak = equity if peak is None or equity > peak else peak
        drawdown.append((ts, -100 * (peak - equity) / peak if peak else 0.0))
    s = document["summary"]
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(t[k]) if t[k] is not None else '–')}</td>"
            for k in (
                "symbol",
                "entry_time",
                "entry_price",
                "quantity",
                "exit_time",
                "exit_price",
                "profit_loss",
                "profit_loss_percent",
                "exit_reason",
            )
        )
        + "</tr>"
        for t in document["trades"]
    )
    cards = "".join(
        f"<div class='card'><b>{html.escape(label)}</b><span>{html.escape(value)}</span></div>"
        for label, value in [
            ("Initial capital", document["initial_capital"]),
            ("Final equity", document["final_equity"]),
            ("Total return", f"{s['total_return_pct']:.2f} %"),
            ("Max drawdown", f"{s['max_drawdown_pct']:.2f} %"),
            ("Trades", str(s["trades"])),
            ("Win rate", "–" if s["win_rate"] is None else f"{100 * s['win_rate']:.1f} %"),
            ("Profit factor", "–" if s["profit_factor"] is None else f"{s['profit_factor']:.2f}"),
            ("Sharpe", "–" if s["sharpe"] is None else f"{s['sharpe']:.2f}"),
            ("Fees", str(s["fees_paid"])),
            ("Time in market", f"{s['time_in_market_pct']:.1f} %"),
            ("Candles", f"{document['candles']} in {document['seconds']} s"),
        ]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest — {html.escape(document["strategy"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2733; }}
.cards {{ display: flex; flex-wrap: wrap; gap: .6rem; }}
.card {{ border: 1px solid #d0d7de; border-radius: .4rem; padding: .4rem .7rem;
         display: flex; flex-direction: column; }}
.card b {{ font-size: .75rem; color: #57606a; }} .axis {{ font-size: 10px; fill: #57606a; }}
table {{ border-collapse: collapse; font-size: .8rem; width: 100%; }}
th, td {{ border-bottom: 1px solid #eaeef2; padding: .2rem .4rem; text-align: left; }}
</style></head><body>
<h1>Backtest: {html.escape(document["strategy"])}</h1>
<p>{html.escape(", ".join(document["files"]))}</p>
<div class="cards">{cards}</div>
<h2>Equity</h2>{_polyline(sampled, 900, 220, "#1f6feb")}
<h2>Drawdown (%)</h2>{_polyline(drawdown, 900, 160, "#cf222e")}
<h2>Trades</h2>
<table><thead><tr><th>Symbol</th><th>Entry (ms)</th><th>Entry price</th><th>Quantity</th><th>Exit (ms)</th>
<th>Exit price</th><th>P&amp;L</th><th>P&amp;L %</th><th>Exit reason</th></tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""
