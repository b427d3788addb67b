"""The dashboard re-prices its cards from a pushed candle as the server values the account while orders wait
(issue 22): a waiting SELL's proceeds are fixed (its quantity no longer moves the equity or exposure), a waiting
BUY is being entered (it moves the exposure, not the equity). The page's own ``CdbAccount.reprice``
(static/cdb/account.js) runs in Node on the real snapshot; it must give what ``/api/status/`` gives at the new
prices. Before, the page moved both cards by the position rows' quantities: off until the 10 s refresh."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from dashboard.snapshot import build_snapshot
from execution.models import Order, Portfolio, Position
from marketdata.clock import ManualClock, use_clock
from marketdata.models import Candle
from risk.models import TradingState
from risk.status import account_summary
from tests.support import processes

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (installed with the browser tests' npm ci)"),
]
ACCOUNT_JS = Path(__file__).resolve().parents[2] / "static" / "cdb" / "account.js"
T1 = int(datetime(2024, 11, 1, 10, tzinfo=UTC).timestamp() * 1000)
T2 = T1 + 60_000

RUNNER = """
const vm = require("vm"), fs = require("fs");
const context = {window: {}};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), context);
const {state, moves} = JSON.parse(fs.readFileSync(0, "utf8"));
for (const [symbol, price] of moves) {
  const before = (state.prices[symbol] || {}).price;
  state.prices[symbol] = {price};
  context.window.CdbAccount.reprice(state, symbol, price, before);
}
process.stdout.write(JSON.stringify({account: state.account, positions: state.positions}));
"""


def candle(symbol: str, ts: int, close: str) -> None:
    c = D(close)
    Candle.objects.create(symbol=symbol, interval="1m", timestamp=ts, open=c, high=c, low=c, close=c, volume=D(10))


def order(name: str, symbol: str, side: str, quantity: str, price: str) -> None:
    Order.objects.create(
        client_order_id=name,
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        requested_price=D(price),
        status=Order.Status.PENDING,
        event_time=T1,
        purpose=Order.Purpose.EXIT if side == "SELL" else Order.Purpose.ENTRY,
    )


def test_the_cards_move_as_the_server_values_the_account_while_orders_wait(settings):
    settings.SYMBOL_WHITELIST = ["BTC_USDT", "ETH_USDT"]
    # 2 BTC held at 100, a SELL of 0.5 of them waiting; an ETH entry of 3 waiting, nothing held.
    Position.objects.create(symbol="BTC_USDT", quantity=D(2), cost_basis=D(200), avg_entry_price=D(100))
    order("waiting-sell", "BTC_USDT", "SELL", "0.5", "110")
    order("waiting-buy", "ETH_USDT", "BUY", "3", "50")
    portfolio = Portfolio.load()
    portfolio.initial_capital, portfolio.cash = D(10000), D(9800)
    portfolio.day, portfolio.day_start_equity = datetime(2024, 11, 1).date(), D(10000)  # set by the day's first event
    portfolio.save()
    TradingState.load()
    candle("BTC_USDT", T1, "110")
    candle("ETH_USDT", T1, "50")
    with use_clock(ManualClock(T1 + 30_000)):
        shown = json.loads(json.dumps(build_snapshot()))
    assert shown["valued"] == {
        "BTC_USDT": {"equity": "1.5", "exposure": "1.5"},
        "ETH_USDT": {"equity": "0", "exposure": "3"},
    }

    candle("BTC_USDT", T2, "99")
    candle("ETH_USDT", T2, "55")
    with use_clock(ManualClock(T2 + 30_000)):
        server = account_summary()
    asked = {"state": shown, "moves": [["BTC_USDT", "99"], ["ETH_USDT", "55"]]}
    done = processes.run(
        ["node", "-e", RUNNER, str(ACCOUNT_JS)], input=json.dumps(asked).encode(), capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode()
    page = json.loads(done.stdout)
    for key in ("equity", "exposure", "daily_pnl", "exposure_pct"):
        assert abs(D(str(page["account"][key])) - D(server[key])) < D("1e-9"), (key, page["account"], server)
    assert D(server["exposure"]) == D("1.5") * 99 + 3 * 55  # the waiting BUY counts, the waiting SELL not
    (row,) = page["positions"]
    assert (row["price"], row["unrealized_pnl"]) == ("99", -2)  # the row: what is stored, at the pushed price
