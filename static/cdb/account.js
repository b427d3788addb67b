// The dashboard's account re-priced from a pushed price, as risk.account_view values it (no DOM: tests/unit runs it
// in Node against the server's valuation). The rows: each open position's price, value and unrealized P&L. The
// cards: equity and exposure move by the price change times the quantities the snapshot's `valued` gives (what is
// held less what waiting SELLs sell, plus for the exposure what waiting BUYs buy); daily P&L, drawdown and exposure
// share follow from them. So the cards agree with the rows and with the server while orders wait.
(function (global) {
  "use strict";

  // `before`: the symbol's price the snapshot valued it at (null: unpriced, valued at 0). True when anything moved.
  function reprice(state, symbol, price, before) {
    let repriced = false;
    for (const p of state.positions) {
      if (p.symbol !== symbol) continue;
      p.price = price;
      p.market_value = Number(p.quantity) * Number(price);
      p.unrealized_pnl = (Number(price) - Number(p.avg_entry_price)) * Number(p.quantity);
      p.unrealized_pnl_pct = Number(p.avg_entry_price) ? Number(price) / Number(p.avg_entry_price) - 1 : null;
      repriced = true;
    }
    const a = state.account, counts = (state.valued || {})[symbol];
    if (!a || !counts) return repriced;
    const moved = Number(price) - (before === null || before === undefined ? 0 : Number(before));
    const equity = Number(a.equity) + moved * Number(counts.equity);
    const exposure = Number(a.exposure) + moved * Number(counts.exposure), start = Number(a.day_start_equity);
    const daily = equity - start;
    Object.assign(a, {equity, exposure, daily_pnl: daily, daily_pnl_pct: start > 0 ? daily / start : 0,
      drawdown_pct: start > 0 ? Math.max(0, -daily / start) : 0, exposure_pct: equity > 0 ? exposure / equity : 0});
    return true;
  }

  global.CdbAccount = {reprice};
})(window);
