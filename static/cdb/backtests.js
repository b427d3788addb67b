// Backtests page: the stored runs (GET /api/backtests/); one run (/backtests/<id>/) with its equity and drawdown
// on dated axes, a candlestick chart per symbol with the run's fills, its trades and risk events; with
// ?compare=<id> two runs side by side.
(function () {
  "use strict";
  const app = document.getElementById("backtests-app");
  // An API error as a person reads it: its detail (or each field's complaint), never the JSON body.
  const problem = (status, body) => {
    const said = body && typeof body.detail === "string" ? body.detail : body && typeof body === "object"
      ? Object.entries(body).map(([field, why]) => field + ": " + [].concat(why).join(" ")).join("; ") : "";
    return (status === 404 ? "no such run" : said || "no answer") + " (HTTP " + status + ")";
  };
  const get = (url) => fetch(url, {credentials: "same-origin"}).then((r) => (r.ok ? r.json()
    : r.json().catch(() => null).then((b) => Promise.reject(new Error(problem(r.status, b))))));
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };
  const stamp = (ms) => (ms ? CdbPriceChart.isoTime(ms) : "–");  // 2026-12-03T14:01:00Z, as everywhere
  // The backtest's *_pct are in percent (12.5 = 12.5 %), win rates fractions: both as ground/amounts' percent(), what
  // `manage.py backtest` and the HTML report print.
  const pct = (n) => CdbPriceChart.percent(n, 2, false);
  const rate = (n) => CdbPriceChart.percent(n, 1);
  const files = (list) => list.map((f) => f.split("/").pop()).join(", ");
  window.cdbCharts = {};

  function table(id, headers, rows) {
    return el("table", {id}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {text: h})))),
      el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", {text: c === null || c === undefined ? "–" : String(c), title: String(c ?? "")})))))));
  }

  async function list() {
    const runs = await get("/api/backtests/?page_size=100");
    const picked = [];
    const compare = el("button", {type: "button", id: "compare-button", disabled: ""}, "Compare the two ticked runs");
    compare.addEventListener("click", () => { location.href = "/backtests/" + picked[0] + "/?compare=" + picked[1]; });
    const rows = runs.results.map((r) => {
      const s = r.summary || {};
      const box = el("input", {type: "checkbox", "aria-label": "compare run " + r.id});
      box.addEventListener("change", () => {
        if (box.checked) picked.push(r.id); else picked.splice(picked.indexOf(r.id), 1);
        compare.disabled = picked.length !== 2;
      });
      return [box, el("a", {href: "/backtests/" + r.id + "/", text: "#" + r.id}), r.created_at.replace("T", " ").slice(0, 16), r.strategy,
        files(r.files), r.amounts.initial_capital, r.amounts.final_equity, pct(r.total_return_pct), pct(s.max_drawdown_pct), s.trades,
        rate(s.win_rate), r.candles, (s.warnings || []).join(" ")];
    });
    app.replaceChildren(el("section", {class: "wide"}, el("div", {class: "panel"},
      el("h2", {}, "Stored backtest runs ", el("span", {class: "small", text: "manage.py backtest --save"}), compare),
      runs.results.length ? table("runs", ["", "Run", "When (UTC)", "Strategy", "Files", "Capital", "Final equity", "Return",
        "Max drawdown", "Trades", "Win rate", "Candles", "Notes"], rows) : el("p", {text: "No stored runs yet: manage.py backtest --data FILE.csv --save"}),
      el("p", {class: "small", text: "Optimization runs will be listed here once they are stored."}))));
    app.dataset.state = "ready";
  }

  function drawdown(curve) {
    let peak = null;
    return curve.map(([t, v]) => { const e = Number(v); peak = peak === null || e > peak ? e : peak; return [t, peak ? -100 * (peak - e) / peak : 0]; });
  }

  function cards(run) {
    const s = run.report.summary, r = run.report, a = run.amounts;  // amounts: with units, from ground/amounts.py
    const items = [["Capital", a.initial_capital], ["Final equity", a.final_equity], ["Return", pct(s.total_return_pct)],
      ["Max drawdown", pct(s.max_drawdown_pct)], ["Trades", s.trades + " closed / " + s.open_trades + " open"],
      ["Win rate", rate(s.win_rate)], ["Profit factor", a.profit_factor],
      ["Sharpe", a.sharpe], ["Fees", a.fees_paid], ["Time in market", pct(s.time_in_market_pct)],
      ["Period", stamp(r.equity_curve.length ? r.equity_curve[0][0] : null) + " → " + stamp(r.equity_curve.length ? r.equity_curve[r.equity_curve.length - 1][0] : null)]];
    const out = el("section", {class: "cards"}, ...items.map(([label, value]) => el("div", {class: "card"}, el("h2", {text: label}), el("p", {class: "big-ish", text: String(value)}))));
    const warnings = (s.warnings || []).map((w) => el("p", {class: "warning", role: "note", text: w}));
    return [out, ...warnings];
  }

  async function detail(id, key, compact) {
    const box = el("div", {class: "run", id: "run-" + key});
    app.append(box);  // placed before the fetch: compared runs stay in the order asked for
    const run = await get("/api/backtests/" + id + "/");
    const r = run.report;
    const head = el("h2", {class: "run-title"}, "Run #" + run.id + " · " + r.strategy + " · " + files(r.files));
    const equity = el("div", {class: "chart-box small", id: key + "-equity"});
    const dd = el("div", {class: "chart-box small", id: key + "-drawdown"});
    box.append(head, ...cards(run), el("div", {class: "panel"}, el("h2", {text: "Equity"}), equity),
      el("div", {class: "panel"}, el("h2", {text: "Drawdown (%)"}), dd));
    window.cdbCharts[key + "Equity"] = CdbPriceChart.line(equity, r.equity_curve, {color: "#5fd38d", area: true});
    window.cdbCharts[key + "Drawdown"] = CdbPriceChart.line(dd, drawdown(r.equity_curve), {color: "#ff6b6b", area: true, invert: true, precision: 2});
    if (compact) return;

    const symbols = [...new Set(r.files.map((f) => f.split("/").pop().split("-")[0]))].sort();
    const select = el("select", {id: "run-symbol", "aria-label": "symbol"}, ...symbols.map((s) => new Option(s, s)));
    const price = el("div", {class: "chart-box price", id: "run-price"});
    const note = el("span", {class: "small", id: "run-price-note"});
    box.append(el("div", {class: "panel"}, el("h2", {}, "Price ", select, el("span", {class: "small legend", text: "▲ entry ▼ exit"}), note), price));
    const chart = CdbPriceChart.create(price);
    window.cdbCharts.price = chart;
    async function load() {
      price.dataset.state = "loading";
      try {
        const data = await get("/api/backtests/" + id + "/chart/?symbol=" + encodeURIComponent(select.value));
        chart.setData(data);
        note.textContent = data.interval + " bars";
        price.dataset.state = "ready";
        price.dataset.symbol = select.value;
      } catch (error) {
        chart.setData({candles: [], indicators: [], fills: [], stops: []});  // never the previous symbol's chart
        note.textContent = (error && error.symbol) ? error.symbol.join(" ") : "no candles";
        price.dataset.state = "error";
      }
    }
    select.addEventListener("change", load);
    await load();

    const trades = r.trades.map((t, i) => {
      const a = run.amounts.trades[i];
      const link = el("a", {href: "#run-price", text: t.symbol});
      link.addEventListener("click", (event) => {
        event.preventDefault();
        if (select.value !== t.symbol) { select.value = t.symbol; load().then(() => chart.centreOn(t.entry_time)); } else chart.centreOn(t.entry_time);
      });
      return [link, stamp(t.entry_time), a.entry_price, stamp(t.exit_time), a.exit_price, a.quantity, a.profit_loss,
        pct(t.profit_loss_percent),
        a.duration, a.exit_reason];  // as the HTML report and the dashboard say them (ground/amounts)
    });
    box.append(el("div", {class: "panel"}, el("h2", {text: "Trades (" + r.trades.length + ")"}),
      el("div", {class: "scroll"}, table("run-trades", ["Symbol", "Entry (UTC)", "Entry price", "Exit (UTC)", "Exit price", "Quantity", "P&L", "P&L %", "Duration", "Exit reason"], trades))));
    const events = (r.risk_events || []).filter((e) => e.decision !== "APPROVE").slice(0, 500);
    box.append(el("div", {class: "panel"}, el("h2", {text: "Risk events (" + events.length + " not approved)"}),
      el("div", {class: "scroll"}, table("run-risk-events", ["Time (UTC)", "Symbol", "Decision", "Layer", "Reason"],
        events.map((e) => [stamp(e.timestamp), e.symbol || "", e.decision, e.layer, e.reason])))));
  }

  async function main() {
    const id = app.dataset.run, other = app.dataset.compare;
    try {
      if (!id) { await list(); return; }
      if (other) {
        app.classList.add("compare");
        await Promise.all([detail(id, "a", true), detail(other, "b", true)]);
      } else {
        await detail(id, "a", false);
      }
      app.dataset.state = "ready";
    } catch (error) {
      app.replaceChildren(el("p", {class: "error", text: "Could not load: " + (error && error.message ? error.message : String(error))}));
      app.dataset.state = "error";
    }
  }
  main();
})();
