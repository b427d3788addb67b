// Dashboard: render the server's snapshot, apply pushes from the websocket, resynchronise after reconnects.
(function () {
  "use strict";
  const ROWS = 25;
  let state = JSON.parse(document.getElementById("initial-snapshot").textContent);

  const $ = (id) => document.getElementById(id);
  // Money: the quote currency's places (USDT 2, BTC 8), never "-0.00". Prices: as ground/amounts' price() (the
  // symbol's quote's places, 6 significant digits at least), so the page and risk_status print one price alike.
  // Every value comes as an exact decimal string; a few are computed here as numbers.
  const num = (n, digits = 8) => (n === null || n === undefined ? "–" : Number(n).toPrecision(digits).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, ""));
  const places = () => (state.account && Number.isInteger(state.account.quote_decimals) ? state.account.quote_decimals : 2);
  const money = (n) => CdbPriceChart.money(n, places());
  const priceOf = (n, symbol) => {
    const places = (state.quote_decimals || {})[String(symbol || "").split("_").pop()];
    return CdbPriceChart.price(n, Number.isInteger(places) ? places : 8);
  };
  const signed = (n) => { const text = money(n); return (/^[\d,.]*[1-9]/.test(text) ? "+" : "") + text; };
  // Percentages as ground/amounts' percent() (what risk_status and the notifications print): the live _pct values are
  // fractions; half to even on the exact decimal string.
  const pct = (n, sign = false) => CdbPriceChart.percent(n, 2, true, sign);
  const time = (ms) => (ms ? CdbPriceChart.isoTime(ms) : "–");  // ISO 8601 UTC to the second, as everywhere
  // A quantity exactly as the server sends it (a decimal string), thousands separated: what the reasons say too.
  const qty = (n) => {
    if (n === null || n === undefined || n === "") return "–";
    const [whole, part] = String(n).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "").split(".");
    return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (part ? "." + part : "");
  };
  // The Qty of an order result: what filled, and what was ordered when that differs (a partial fill, a failure).
  const filledOf = (o) => (o.quantity === undefined || o.quantity === null || Number(o.quantity) === Number(o.filled_quantity)
    ? qty(o.filled_quantity) : qty(o.filled_quantity) + " of " + qty(o.quantity));
  const label = (status) => String(status || "").replace(/_/g, " ");
  const age = (sec) => {
    if (sec === null || sec === undefined) return "never";
    if (sec < 120) return sec.toFixed(0) + " s ago";
    if (sec < 7200) return (sec / 60).toFixed(0) + " min ago";
    if (sec < 172800) return (sec / 3600).toFixed(0) + " h ago";
    return (sec / 86400).toFixed(0) + " days ago";
  };
  // Data stamped after the market clock (a replay of later candles): how far ahead, not "0 s ago".
  const ahead = (sec) => age(sec).replace(" ago", " ahead of the market clock");
  // An API error as a person reads it: its detail, or each field's complaint ("reason: Ensure this field has no more
  // than 500 characters."), never the JSON body.
  const problem = (body) => (typeof body.detail === "string" ? body.detail
    : Object.entries(body).map(([field, why]) => field + ": " + [].concat(why).join(" ")).join("; ") || "no answer");
  const csrf = () => (document.querySelector("[name=csrfmiddlewaretoken]") || {}).value || "";

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    if (cls === "reason") td.title = td.textContent;  // truncated in the table, whole on hover
    return td;
  }

  function fill(tableId, rows, toCells, rowClass, fresh) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren(...rows.map((row, i) => {
      const tr = document.createElement("tr");
      tr.append(...toCells(row));
      const cls = [rowClass ? rowClass(row) : "", fresh && i === 0 ? "fresh" : ""].join(" ").trim();
      if (cls) tr.className = cls;
      return tr;
    }));
  }

  function listItems(id, items) {
    $(id).replaceChildren(...items.map(([text, ok, title]) => {
      const li = document.createElement("li");
      li.textContent = text;
      li.className = ok ? "ok" : "bad";
      if (title) li.title = title;
      return li;
    }));
  }

  function meter(id, value, limit) {
    const ratio = limit ? Math.min(value / limit, 1) : 0;
    $(id).style.width = (ratio * 100).toFixed(1) + "%";
    $(id).className = ratio >= 1 ? "over" : ratio >= 0.8 ? "near" : "";
  }

  function renderCards() {
    const ts = state.trading_state, a = state.account;
    $("state").textContent = ts.state;
    $("state").className = "big " + ts.state;
    $("state-reason").textContent = ts.reason ? "reason: " + ts.reason : "";
    $("state-since").textContent = "since " + CdbPriceChart.isoTime(ts.since) + (ts.changed_by ? " · by " + ts.changed_by : "");
    const halt = $("halt-button"), release = $("release-button");
    if (halt) {  // a halt while halted only adds a reason: Halt is for ACTIVE and PAUSED, Release for PAUSED and HALTED
      halt.disabled = ts.state === "HALTED";
      halt.title = halt.disabled ? "trading is halted already" : "stop every order until a person releases trading";
      release.disabled = ts.state === "ACTIVE";
      release.title = release.disabled ? "trading is active: nothing to release" : "back to ACTIVE";
    }
    $("mode").textContent = state.mode;
    $("mode").className = "big " + state.mode;
    $("market-time").textContent = state.embedded ? "embedded: SQLite, in-process tasks" : "";
    $("clock-market").textContent = time(state.market_time_ms);
    $("clock-note").textContent = state.clock || "";
    $("clock-wall").textContent = time(state.wall_time_ms);
    $("equity").textContent = money(a.equity);
    $("cash").textContent = a.quote + " · cash " + money(a.cash) + " · realized (before fees) " + money(a.realized_pnl) + " · fees " + money(a.fees_paid);
    $("daily-pnl").textContent = signed(a.daily_pnl);
    $("daily-pnl").className = "big " + (Number(a.daily_pnl) > -0.5 * 10 ** -places() ? "up" : "down");
    $("drawdown").textContent = pct(a.daily_pnl_pct, true) + " · drawdown " + pct(a.drawdown_pct) + " of limit " + pct(a.drawdown_limit_pct);
    meter("drawdown-meter", Number(a.drawdown_pct), Number(a.drawdown_limit_pct));
    $("exposure").textContent = money(a.exposure);
    $("exposure-limit").textContent = pct(a.exposure_pct) + " of equity · limit " + pct(a.exposure_limit_pct);
    meter("exposure-meter", Number(a.exposure_pct), Number(a.exposure_limit_pct));
    $("open-positions").textContent = String(a.open_positions);
    const unrealized = state.positions.reduce((sum, p) => sum + Number(p.unrealized_pnl || 0), 0);
    $("unrealized").textContent = "unrealized (before fees) " + money(unrealized);
    listItems("freshness", state.freshness.length ? state.freshness.map((f) => [
      f.symbol + ": " + (f.ahead_sec > 0 ? ahead(f.ahead_sec) : age(f.age_sec)) + (f.stale ? " — STALE" : ""),
      !f.stale, "last data " + time(f.last_seen_ms)]) : [["no watched symbols", true]]);
    listItems("health", Object.entries(state.health).map(([name, c]) => [name + ": " + (c.ok ? "ok" : "DOWN") + " — " + c.detail, c.ok]));
  }

  function renderTables(fresh) {
    fill("order-results", state.order_results, (o) => [cell(time(o.timestamp), "time"), cell(o.symbol), cell(o.side, o.side),
      cell(label(o.status), o.status), cell(filledOf(o), "qty"), cell(priceOf(o.price, o.symbol)), cell(money(o.fees)), cell(o.reason, "reason")],
      (o) => "status-" + o.status, fresh === "order_results");
    fill("alerts", state.alerts, (a) => [cell(time(a.timestamp), "time"), cell(a.level, a.level), cell(a.code), cell(a.message, "reason")],
      (a) => "level-" + a.level, fresh === "alerts");
    fill("signals", state.signals, (s) => [cell(time(s.timestamp), "time"), cell(s.symbol), cell(s.side, s.side),
      cell(num(s.confidence, 3)), cell(s.reason, "reason")], null, fresh === "signals");
    fill("positions", state.positions, (p) => [cell(p.symbol), cell(qty(p.quantity)), cell(priceOf(p.avg_entry_price, p.symbol)),
      cell(priceOf(p.price, p.symbol)), cell(signed(p.unrealized_pnl) + " (" + pct(p.unrealized_pnl_pct) + ")", Number(p.unrealized_pnl) >= 0 ? "up" : "down")]);
    const wl = state.watchlist;
    $("watchlist-source").textContent = "(" + wl.source + (wl.lookback_minutes ? ", last " + wl.lookback_minutes + " min" : "") +
      (wl.as_of_ms ? " @ " + time(wl.as_of_ms) : "") + ")";
    const key = watchSort.key, dir = watchSort.dir;
    const numeric = (v) => (v === null || v === undefined ? v : Number(v));
    const value = (w) => (key === "symbol" ? w.symbol : key === "price" ? numeric((state.prices[w.symbol] || {}).price)
      : key === "pct_change" && w.pct_change !== null ? Math.abs(Number(w.pct_change)) : numeric(w[key]));
    const entries = wl.entries.slice().sort((a, b) => {
      const va = value(a), vb = value(b);
      if (va === null || va === undefined) return 1;
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : va > vb ? 1 : 0) * dir;
    });
    fill("watchlist", entries, (w) => [cell(w.rank), cell(w.symbol),
      cell(priceOf((state.prices[w.symbol] || {}).price, w.symbol)),
      cell(pct(w.pct_change, true), Number(w.pct_change) > 0 ? "up" : Number(w.pct_change) < 0 ? "down" : ""),
      cell(w.quote_volume === null ? "–" : money(w.quote_volume))]);
    for (const th of $("watchlist").querySelectorAll("th[data-sort]")) {
      th.dataset.dir = th.dataset.sort === key ? (dir > 0 ? "asc" : "desc") : "";
    }
  }

  // The watch list sorts by a clicked column (again: the other way); |% change| sorts by size.
  const watchSort = {key: "rank", dir: 1};
  for (const th of document.querySelectorAll("#watchlist th[data-sort]")) {
    th.addEventListener("click", () => {
      watchSort.dir = watchSort.key === th.dataset.sort ? -watchSort.dir : th.dataset.sort === "rank" || th.dataset.sort === "symbol" ? 1 : -1;
      watchSort.key = th.dataset.sort;
      renderTables();
    });
  }

  // --- charts (lightweight-charts, static/cdb/pricechart.js) ---------------------------------------------
  const CHART_BARS = 300;
  let chartSymbol = null, chartInterval = null, chartData = null, chartLoading = null, indicatorTimer = null;
  let chartUntil = null;  // set while the chart shows an older stretch (a clicked trade): no live bars then
  const priceChart = CdbPriceChart.create($("price-chart"));
  const equityChart = CdbPriceChart.line($("equity-chart"), [], {color: "#5fd38d", area: true});
  window.cdbCharts = {price: priceChart, equity: equityChart};

  function renderEquity() {
    equityChart.setData(state.equity_curve.map((p) => [p.t, p.equity]));
  }

  function symbolOptions() {
    const symbols = Object.keys(state.prices).sort();
    const select = $("chart-symbol");
    const current = [...select.options].map((o) => o.value).join(",");
    if (current !== symbols.join(",")) {
      select.replaceChildren(...symbols.map((s) => new Option(s, s)));
    }
    if (!chartSymbol || !symbols.includes(chartSymbol)) chartSymbol = symbols[0] || null;
    if (chartSymbol) select.value = chartSymbol;
  }

  function intervalOptions(intervals, current) {
    const select = $("chart-interval");
    if ([...select.options].map((o) => o.value).join(",") !== intervals.join(",")) {
      select.replaceChildren(...intervals.map((i) => new Option(i, i)));
    }
    select.value = current;
  }

  // The whole chart from the server: candles, the strategy's indicators (trading/indicators.py), fills, stops.
  async function loadPriceChart(options) {
    symbolOptions();
    const root = $("price-chart");
    if (!chartSymbol) { root.dataset.state = "empty"; return; }
    const symbol = chartSymbol, params = {symbol, limit: CHART_BARS};
    if (chartInterval) params.interval = chartInterval;
    chartUntil = options && options.until ? Math.floor(options.until) : options && options.keepRange ? chartUntil : null;
    if (chartUntil) params.until = chartUntil;
    root.dataset.state = "loading";
    const load = chartLoading = fetch("/api/chart/?" + new URLSearchParams(params), {credentials: "same-origin"})
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error("chart " + r.status))));
    try {
      const data = await load;
      if (load !== chartLoading || symbol !== chartSymbol) return;
      chartData = data;
      chartInterval = data.interval;
      intervalOptions(data.intervals, data.interval);
      priceChart.setData(data);
      if (options && options.keepRange) priceChart.chart.timeScale().setVisibleLogicalRange(options.keepRange);
      root.dataset.state = data.candles.length ? "ready" : "empty";
      root.dataset.symbol = symbol;
      root.dataset.interval = data.interval;
    } catch (error) {
      if (load === chartLoading) root.dataset.state = "error";
    }
  }

  // Indicator lines are the server's: after live candles, fetch them again (at most every 3 s), keeping the view.
  function refreshIndicatorsSoon() {
    if (indicatorTimer) return;
    indicatorTimer = setTimeout(() => {
      indicatorTimer = null;
      loadPriceChart({keepRange: priceChart.chart.timeScale().getVisibleLogicalRange()});
    }, 3000);
  }

  // Centre the chart on a trade: its symbol, the bars from its entry to its exit (older ones are fetched).
  window.cdbCentreChart = async (symbol, entryMs, exitMs) => {
    const end = exitMs || entryMs;
    const bars = chartData && chartData.candles;
    const loaded = bars && bars.length && symbol === chartSymbol && bars[0].time <= entryMs;
    if (!loaded) {
      chartSymbol = symbol;
      const span = chartData && chartData.interval_ms ? chartData.interval_ms : 60000;
      await loadPriceChart({until: end + CHART_BARS / 2 * span});
    }
    priceChart.centreOn((entryMs + end) / 2, Math.max(60, 3 * (end - entryMs) / ((chartData && chartData.interval_ms) || 60000)));
  };

  // --- closed trades (GET /api/trades/ and /api/trades/totals/, the same filters) --------------------------
  const TRADES_PAGE = 20;
  let tradesPage = 1, tradesPages = 1, tradesTimer = null;
  const {duration, exitReason} = CdbPriceChart;  // as the backtest pages and the HTML report say them

  function tradeFilters() {
    const params = {status: "CLOSED"};
    if ($("trades-symbol").value) params.symbol = $("trades-symbol").value;
    if ($("trades-day").value) params.day = $("trades-day").value;
    return params;
  }

  async function loadTrades() {
    const filters = tradeFilters();
    const q = (extra) => new URLSearchParams(Object.assign({}, filters, extra)).toString();
    try {
      const [page, totals] = await Promise.all([
        fetch("/api/trades/?" + q({page: tradesPage, page_size: TRADES_PAGE}), {credentials: "same-origin"}).then((r) => r.json()),
        fetch("/api/trades/totals/?" + q({}), {credentials: "same-origin"}).then((r) => r.json()),
      ]);
      tradesPages = Math.max(1, Math.ceil(page.count / TRADES_PAGE));
      $("trades-page").textContent = "page " + tradesPage + " of " + tradesPages;
      $("trades-prev").disabled = tradesPage <= 1;
      $("trades-next").disabled = tradesPage >= tradesPages;
      const pnl = Number(totals.profit_loss);
      $("trades-totals").textContent = CdbPriceChart.counted(totals.trades, "trade") + " · P&L after fees " + signed(pnl) +
        " · win rate " + CdbPriceChart.percent(totals.win_rate, 1) + " · fees " + money(totals.fees);
      $("trades-totals").dataset.profitLoss = totals.profit_loss;
      $("trades-totals").dataset.trades = totals.trades;
      fill("closed-trades", page.results || [], (t) => [cell(t.symbol), cell(CdbPriceChart.isoTime(t.entry_time), "time"), cell(priceOf(t.entry_price, t.symbol)),
        cell(CdbPriceChart.isoTime(t.exit_time), "time"), cell(priceOf(t.exit_price, t.symbol)), cell(qty(t.quantity)),
        cell(signed(t.profit_loss), Number(t.profit_loss) >= 0 ? "up" : "down"),
        cell(CdbPriceChart.percent(t.profit_loss_percent, 2, false), Number(t.profit_loss) >= 0 ? "up" : "down"),
        cell(duration(t.duration_seconds)), cell(exitReason(t.exit_reason), "reason")], () => "clickable");
      [...$("closed-trades").querySelectorAll("tbody tr")].forEach((tr, i) => {
        const t = page.results[i];
        tr.dataset.tradeId = t.trade_id;
        tr.addEventListener("click", () => window.cdbCentreChart(t.symbol, Date.parse(t.entry_time), Date.parse(t.exit_time)));
      });
    } catch (error) { /* the connection badge shows what is wrong */ }
  }

  function tradeSymbols() {
    const select = $("trades-symbol"), symbols = Object.keys(state.prices).sort();
    const have = [...select.options].slice(1).map((o) => o.value);
    if (have.join(",") === symbols.join(",")) return;
    const current = select.value;
    select.replaceChildren(new Option("all symbols", ""), ...symbols.map((s) => new Option(s, s)));
    select.value = symbols.includes(current) ? current : "";
  }

  function loadTradesSoon() {
    if (tradesTimer) return;
    tradesTimer = setTimeout(() => { tradesTimer = null; loadTrades(); }, 1000);
  }

  $("trades-symbol").addEventListener("change", () => { tradesPage = 1; loadTrades(); });
  $("trades-day").addEventListener("change", () => { tradesPage = 1; loadTrades(); });
  $("trades-prev").addEventListener("click", () => { if (tradesPage > 1) { tradesPage--; loadTrades(); } });
  $("trades-next").addEventListener("click", () => { if (tradesPage < tradesPages) { tradesPage++; loadTrades(); } });

  function render(fresh) {
    tradeSymbols();
    renderCards();
    renderTables(fresh);
    renderEquity();
  }

  function prepend(list, item) {
    list.unshift(item);
    list.length = Math.min(list.length, ROWS);
  }

  // Newest (market) time first, as the server sorts them: a late-stamped alert goes below newer ones.
  function insertByTime(list, item) {
    const at = list.findIndex((other) => (other.timestamp || 0) <= (item.timestamp || 0));
    list.splice(at < 0 ? list.length : at, 0, item);
    list.length = Math.min(list.length, ROWS);
  }

  function apply(message) {
    const data = message.data;
    switch (message.kind) {
      case "snapshot": state = data; render(); if (!chartData) loadPriceChart(); loadTradesSoon(); return;  // live bars keep the chart current
      case "refresh": merge(data); return;
      case "watchlist": state.watchlist = data; break;
      case "market_data": {
        // rows and cards from the same price in one step (CdbAccount.reprice, static/cdb/account.js)
        const before = (state.prices[data.symbol] || {}).price;
        state.prices[data.symbol] = {timestamp: data.timestamp, price: data.price, volume: data.volume};
        if (CdbAccount.reprice(state, data.symbol, data.price, before)) { renderCards(); renderTables(); }
        if (data.symbol === chartSymbol && chartData && !chartUntil && (!data.interval || data.interval === chartData.base_interval)) {
          priceChart.updateCandle({time: data.timestamp, open: data.open ?? data.price, high: data.high ?? data.price,
            low: data.low ?? data.price, close: data.price, volume: data.volume});
          refreshIndicatorsSoon();
        } else if (!chartSymbol) {
          loadPriceChart();
        }
        return;
      }
      case "signals": prepend(state.signals, data); break;
      case "orders": refreshSoon(); return;  // an order placed: the account counts it (cash, exposure), read it again
      case "order_results":
        prepend(state.order_results, data);
        const filled = data.status === "FILLED" || data.status === "PARTIALLY_FILLED";
        if (filled && data.symbol === chartSymbol && data.side === "SELL") {  // a closed lot's stop leaves at once
          loadPriceChart({keepRange: priceChart.chart.timeScale().getVisibleLogicalRange()});
        } else if (filled && data.symbol === chartSymbol && data.price) refreshIndicatorsSoon();  // markers, stops
        if (filled && data.side === "SELL") loadTradesSoon();
        refreshSoon();
        break;
      case "alerts": insertByTime(state.alerts, data); break;
      case "trading_state": state.trading_state = data; refreshSoon(); break;
      case "ack": if (data.trading_state) state.trading_state = data.trading_state; break;
      default: return;
    }
    render(message.kind);
  }

  // Cards, positions, charts and the watch list from the server; the live tables keep their pushes. Alerts stored
  // without a push to this page (a halt or release typed in a shell) join the table from the fresh snapshot.
  const alertKey = (a) => [a.timestamp, a.level, a.code, a.symbol || "", a.message].join("|");
  function merge(fresh) {
    state.alerts = state.alerts || [];
    const shown = new Set(state.alerts.map(alertKey));
    for (const alert of (fresh.alerts || []).slice().reverse()) {
      if (!shown.has(alertKey(alert))) insertByTime(state.alerts, alert);
    }
    state = Object.assign(fresh, {order_results: state.order_results, signals: state.signals, alerts: state.alerts});
    render();
    symbolOptions();
  }

  // Cash, equity and positions change with fills: ask for a fresh snapshot, at most once a second
  // (over the websocket when it is open, else over HTTP).
  let refreshTimer = null;
  function refreshSoon(delayMs = 1000) {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({action: "refresh"}));
        return;
      }
      try {
        const response = await fetch("/api/dashboard/snapshot/", {credentials: "same-origin"});
        if (response.ok) merge(await response.json());
      } catch (error) { /* the connection badge shows what is wrong */ }
    }, delayMs);
  }
  setInterval(() => refreshSoon(0), 10000);  // ages, health and the watch list move without events

  // The clock card between two snapshots: the wall clock and a live market clock (the system clock's) advance by
  // the time passed since the snapshot, on this browser's monotonic clock; an event-driven market clock (a simulated
  // market, a replay) follows the pushed rows' times (an order decided at 19:46 is not shown under "Market time
  // 19:42"). Never back, until a new connection's snapshot (maybe of a new market).
  const ROW_KINDS = new Set(["signals", "order_results", "alerts"]);
  let rowsMs = 0, base = {market: state.market_time_ms, wall: state.wall_time_ms, at: performance.now()};
  function followClocks(message) {
    if (message.kind === "snapshot" || message.kind === "refresh") {
      if (message.kind === "snapshot") rowsMs = 0;
      base = {market: state.market_time_ms, wall: state.wall_time_ms, at: performance.now()};
    } else if (ROW_KINDS.has(message.kind)) {
      rowsMs = Math.max(rowsMs, Number(message.data && message.data.timestamp) || 0);
    } else if (message.kind !== "tick") {
      return;
    }
    const passed = performance.now() - base.at, live = String(state.clock || "").startsWith("system clock");
    const market = Math.floor(Math.max(Number(base.market) + (live ? passed : 0), rowsMs, Number(state.market_time_ms)));
    const wall = base.wall ? Math.floor(base.wall + passed) : base.wall;
    if (market === state.market_time_ms && wall === state.wall_time_ms) return;
    Object.assign(state, {market_time_ms: market, wall_time_ms: wall});
    renderCards();
  }
  setInterval(() => followClocks({kind: "tick"}), 1000);  // the wall clock (and a live market clock) tick on their own

  // --- websocket with reconnect and backoff ---------------------------------------------------------------
  let delay = 500, socket = null;
  function connected(live) {
    $("connection").textContent = live ? "live" : "disconnected — reconnecting";
    $("connection").className = "badge " + (live ? "connected" : "disconnected");
    $("disconnected-banner").hidden = live;
    document.body.dataset.connection = live ? "live" : "disconnected";
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(scheme + "://" + location.host + "/ws/dashboard/");
    socket.onopen = () => { delay = 500; connected(true); };
    socket.onmessage = (event) => { const message = JSON.parse(event.data); apply(message); followClocks(message); };
    socket.onclose = () => {
      connected(false);
      const wait = delay + Math.random() * delay * 0.3;
      delay = Math.min(delay * 2, 10000);
      setTimeout(connect, wait);
    };
  }

  // --- halt / release (only rendered for users with risk.halt_trading; the server checks again) --------------
  const dialog = $("state-dialog");
  if (dialog) {
    let action = "halt";
    const open = (which) => {
      action = which;
      $("state-dialog-title").textContent = which === "halt" ? "Halt trading? No order will execute until released." : "Release trading (back to ACTIVE)?";
      $("state-confirm").textContent = which === "halt" ? "Confirm halt" : "Confirm release";
      $("state-confirm").className = which === "halt" ? "danger" : "primary";
      $("state-reason-input").value = "";
      $("state-close-input").checked = false;
      $("state-close-label").hidden = which !== "halt";
      $("state-close-input").onchange = (event) => {
        $("state-dialog-title").textContent = event.target.checked
          ? "Halt trading and close every position? Only the closing orders will execute, at the next price of each symbol."
          : "Halt trading? No order will execute until released.";
      };
      $("state-dialog-error").textContent = "";
      dialog.showModal();
    };
    $("halt-button").addEventListener("click", () => open("halt"));
    $("release-button").addEventListener("click", () => open("release"));
    $("state-cancel").addEventListener("click", () => dialog.close());
    $("state-confirm").addEventListener("click", async () => {
      const reason = $("state-reason-input").value.trim();
      if (action === "halt" && !reason) { $("state-dialog-error").textContent = "A halt needs a reason."; return; }
      let response;
      try {
        response = await fetch("/api/risk/" + action + "/", {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
          body: JSON.stringify(action === "halt" ? {reason, close_positions: $("state-close-input").checked} : {reason}),
        });
      } catch (error) {
        $("state-dialog-error").textContent = "The server did not answer; nothing changed. Try again.";
        return;
      }
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        $("state-dialog-error").textContent = problem(body) + " (HTTP " + response.status + ")";
        return;
      }
      state.trading_state = body;
      $("state-notice").textContent = body.changed === false ? body.message : "";  // "Trading is ACTIVE already …"
      render();
      dialog.close();
    });
  }

  $("chart-symbol").addEventListener("change", (event) => { chartSymbol = event.target.value; chartInterval = null; loadPriceChart(); });
  $("chart-interval").addEventListener("change", (event) => { chartInterval = event.target.value; loadPriceChart(); });
  document.body.dataset.connection = "connecting";
  render();
  loadPriceChart();
  loadTrades();
  connect();
})();
