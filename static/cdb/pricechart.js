// Candlestick charts on TradingView's lightweight-charts (served from static/vendor, installed by `npm ci`):
// candles + volume, the strategy's indicator lines as the server computed them (never recomputed here),
// ▲/▼ markers per fill with a hover card, the stop level of each open lot, and dated equity/drawdown lines.
// Used by the dashboard, the backtest pages and the standalone --html report (inlined there).
(function (global) {
  "use strict";
  const LC = global.LightweightCharts;
  const COLORS = {up: "#26a69a", down: "#ef5350", text: "#9aa7b4", grid: "#1f2a35", bg: "#131a21"};
  const LINE_COLORS = ["#f0c05a", "#8cc4ff", "#c792ea", "#ff9e64", "#5fd38d", "#ff6b9a"];
  const sec = (ms) => Math.floor(ms / 1000);
  // A quantity exact, as ground/amounts' quantity(): "1772.329280850000" → "1,772.32928085".
  const quantity = (q) => { const [whole, part = ""] = String(q).split("."), rest = part.replace(/0+$/, "");
    return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (rest ? "." + rest : ""); };
  // A price as ground/amounts' price(): the quote's places (USDT 2, BTC 8), more where a cheap coin needs them for
  // 6 significant digits, no trailing zeros past the quote's, rounded half to even on the exact decimal string:
  // "194.17710093" → "194.177", "36416.3149" → "36,416.31", "0.0000363882" (BTC) → "0.0000363882".
  const PRICE_DIGITS = 6;
  function roundDecimal(text, places) {
    const [, sign, whole, frac = ""] = /^(-?)(\d*)(?:\.(\d*))?$/.exec(text);
    let n = BigInt((whole || "0") + frac.padEnd(places, "0").slice(0, places));
    const rest = frac.slice(places);
    const first = rest.charAt(0) || "0";
    if (first > "5" || (first === "5" && (/[1-9]/.test(rest.slice(1)) || n % 2n === 1n))) n += 1n;
    const digits = n.toString().padStart(places + 1, "0");
    return (n === 0n ? "" : sign) + (places ? digits.slice(0, -places) + "." + digits.slice(-places) : digits);
  }
  // The exact decimal string of a value without exponent; a number as its shortest round-trip form (what Python's
  // str(float) gives, so 1234.565 stays 1234.565, not 1234.56500000000005…); null for nothing or not a number.
  function decimalText(value) {
    if (value === null || value === undefined || value === "") return null;
    if (typeof value === "number" && !Number.isFinite(value)) return null;
    const text = String(value).trim();
    if (/^-?\d*(\.\d*)?$/.test(text) && /\d/.test(text)) return text;
    const m = /^(-?)(\d*)(?:\.(\d*))?e([+-]?\d+)$/i.exec(text);
    if (!m || !/\d/.test(m[2] + (m[3] || ""))) return null;
    const digits = m[2] + (m[3] || ""), point = m[2].length + Number(m[4]);
    if (point <= 0) return m[1] + "0." + "0".repeat(-point) + digits;
    if (point >= digits.length) return m[1] + digits + "0".repeat(point - digits.length);
    return m[1] + digits.slice(0, point) + "." + digits.slice(point);
  }
  const grouped = (whole) => (whole.replace(/^0+(?=\d)/, "") || "0").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  // Money as ground/amounts' money(): the quote's places, rounded half to even on the exact decimal string, never
  // "-0.00" ("1234.565" → "1,234.56", "1234.575" → "1,234.58").
  function money(value, places = 2) {
    const text = decimalText(value);
    if (text === null) return "–";
    const [w, f] = roundDecimal(text, places).split(".");
    return (w.startsWith("-") ? "-" + grouped(w.slice(1)) : grouped(w)) + (f === undefined ? "" : "." + f);
  }
  // A percentage as ground/amounts' percent(): a fraction (0.0123 → "1.23 %"), or with fraction false a value already
  // in percent (a backtest's total_return_pct: 12.345 → "12.34 %"); the decimal point moved on the exact string (no
  // float product), rounded half to even, never "-0.00 %"; with sign, "+" before a value that rounds above zero.
  function percent(value, places = 2, fraction = true, sign = false) {
    let text = decimalText(value);
    if (text === null) return "–";
    if (fraction) {
      const [, minus, whole, frac = ""] = /^(-?)(\d*)(?:\.(\d*))?$/.exec(text), f = frac.padEnd(2, "0");
      text = minus + (whole || "0") + f.slice(0, 2) + (f.length > 2 ? "." + f.slice(2) : "");
    }
    const shown = money(text, places);
    return (sign && /[1-9]/.test(shown) && !shown.startsWith("-") ? "+" : "") + shown + " %";
  }
  // A trade's exit reason and how long it was held, as ground/amounts' exit_reason() and duration(): "stop-loss";
  // whole minutes (half to even) as "1d 2h 5m", "1h 4m", "10m".
  const EXIT_REASONS = {stop_loss: "stop-loss", drawdown_close: "drawdown close", operator_close: "operator"};
  const exitReason = (code) => (code === null || code === undefined ? "–" : EXIT_REASONS[code] || code);
  function duration(sec) {
    if (sec === null || sec === undefined || sec === "" || !Number.isFinite(Number(sec))) return "–";
    const whole = Math.floor(Number(sec) / 60), rest = Number(sec) - 60 * whole;
    const all = whole + (rest > 30 || (rest === 30 && whole % 2 !== 0) ? 1 : 0);
    const d = Math.floor(all / 1440), h = Math.floor((all % 1440) / 60), m = all % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m";
  }
  function price(value, places = 8) {
    const text = decimalText(value);
    if (text === null) return "–";
    const [whole, frac = ""] = text.replace("-", "").split(".");
    const lead = whole.replace(/^0+/, ""), zeros = frac.length - frac.replace(/^0+/, "").length;
    const adjusted = lead ? lead.length - 1 : /[1-9]/.test(frac) ? -(zeros + 1) : null;  // the first digit's power of 10
    const wanted = adjusted === null ? places : Math.max(places, PRICE_DIGITS - adjusted - 1);
    const [w, f = ""] = roundDecimal(text, wanted).split(".");
    const kept = f.slice(0, places) + f.slice(places).replace(/0+$/, "");
    return w.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (kept ? "." + kept : "");
  }
  // A count with its noun in the right number, as ground/amounts' counted(): "1 trade", "0 trades".
  const counted = (count, noun, plural) => count + " " + (Number(count) === 1 ? noun : plural || noun + "s");
  // A time as people read it everywhere, as ground/amounts' iso_utc(): ISO 8601 UTC to the second,
  // "2026-12-03T14:01:00Z", from epoch ms or the API's ISO text; "–" for nothing.
  const isoTime = (t) => {
    const ms = typeof t === "string" ? Date.parse(t) : t;
    return ms === null || ms === undefined || Number.isNaN(ms) || t === "" ? "–" : new Date(ms).toISOString().slice(0, 19) + "Z";
  };

  // A candle for drawing: the server sends exact decimal strings, lightweight-charts draws numbers.
  const numbers = (b) => ({time: b.time, open: Number(b.open), high: Number(b.high), low: Number(b.low),
    close: Number(b.close), volume: Number(b.volume)});

  function baseOptions(container, extra) {
    return Object.assign({
      autoSize: true,
      layout: {background: {color: COLORS.bg}, textColor: COLORS.text, fontSize: 11},
      grid: {vertLines: {color: COLORS.grid}, horzLines: {color: COLORS.grid}},
      rightPriceScale: {borderColor: "#26313c"},
      // A small minimum bar spacing lets fitContent show a whole backtest (thousands of points) at once.
      timeScale: {borderColor: "#26313c", timeVisible: true, secondsVisible: false, minBarSpacing: 0.05},
      crosshair: {mode: LC.CrosshairMode.Normal},
      handleScroll: true, handleScale: true,
    }, extra || {});
  }

  function priceFormat(candles) {
    const close = candles.length ? Math.abs(candles[candles.length - 1].close) : 1;
    const precision = close >= 1000 ? 2 : close >= 1 ? 4 : Math.min(10, Math.ceil(-Math.log10(close)) + 4);
    return {type: "price", precision, minMove: Math.pow(10, -precision)};
  }

  function fillText(f, places = 8) {
    const parts = [f.side + " " + quantity(f.quantity) + " @ " + price(f.price, places), "fee " + money(f.fee, places), f.side === "SELL" ? "exit: " + f.reason : "entry"];
    if (f.profit_loss !== null && f.profit_loss !== undefined) parts.push("P&L " + (Number(f.profit_loss) > 0 ? "+" : "") + money(f.profit_loss, places));
    parts.push(isoTime(f.time));
    return parts;
  }

  // A price chart in `container`. `intervalMs` maps fill times onto their bar.
  function create(container, options) {
    options = options || {};
    container.classList.add("lw-chart");
    const chart = LC.createChart(container, baseOptions(container));
    const candles = chart.addSeries(LC.CandlestickSeries, {
      upColor: COLORS.up, downColor: COLORS.down, borderVisible: false, wickUpColor: COLORS.up, wickDownColor: COLORS.down,
    });
    const volume = chart.addSeries(LC.HistogramSeries, {priceScaleId: "volume", priceFormat: {type: "volume"}, lastValueVisible: false, priceLineVisible: false});
    chart.priceScale("volume").applyOptions({scaleMargins: {top: 0.8, bottom: 0}});
    candles.priceScale().applyOptions({scaleMargins: {top: 0.08, bottom: 0.22}});
    const markers = LC.createSeriesMarkers(candles, []);
    const tooltip = document.createElement("div");
    tooltip.className = "chart-tooltip";
    tooltip.hidden = true;
    container.appendChild(tooltip);

    let lines = {}, guides = [], stopLines = [], fills = [], intervalMs = 60000, bars = [], places = 8, base = "";

    const barTime = (ms) => sec(ms - (ms % intervalMs));
    function volumeBar(b) {
      return {time: sec(b.time), value: b.volume, color: b.close >= b.open ? "rgba(38,166,154,.45)" : "rgba(239,83,80,.45)"};
    }
    function renderMarkers() {
      const list = fills.map((f) => ({
        time: barTime(f.time), position: f.side === "BUY" ? "atPriceBottom" : "atPriceTop", price: Number(f.price),
        shape: f.side === "BUY" ? "arrowUp" : "arrowDown", color: f.side === "BUY" ? "#5fd38d" : "#ff6b6b", size: 2,
        id: f.client_order_id || String(f.time) + f.side,
      }));
      list.sort((a, b) => a.time - b.time);
      markers.setMarkers(list);
    }

    function setIndicators(indicatorLines) {
      for (const s of Object.values(lines)) chart.removeSeries(s);
      lines = {}; guides = [];
      let colour = 0;
      for (const line of indicatorLines || []) {
        const pane = line.pane === "price" ? 0 : 1;
        const series = chart.addSeries(LC.LineSeries, {
          color: LINE_COLORS[colour++ % LINE_COLORS.length], lineWidth: pane ? 1.5 : 1.5, title: line.name,
          priceLineVisible: false, lastValueVisible: pane === 1, crosshairMarkerVisible: false,
          priceFormat: pane ? {type: "price", precision: 1, minMove: 0.1} : priceFormat(bars),
        }, pane);
        series.setData(line.values.map(([t, v]) => ({time: sec(t), value: Number(v)})));
        for (const level of line.guides || []) {
          guides.push(series.createPriceLine({price: level, color: "#4a5866", lineStyle: LC.LineStyle.Dashed, lineWidth: 1, axisLabelVisible: true, title: ""}));
        }
        lines[line.name] = series;
      }
      const panes = chart.panes();
      if (panes.length > 1) panes[1].setHeight(Math.max(60, Math.round(container.clientHeight * 0.22)));
    }

    function setStops(stops) {
      for (const line of stopLines) candles.removePriceLine(line);
      stopLines = (stops || []).map((s) => candles.createPriceLine({
        price: Number(s.price), color: "#ff6b6b", lineStyle: LC.LineStyle.Dotted, lineWidth: 1, axisLabelVisible: true,
        title: "stop · " + quantity(s.quantity) + (base ? " " + base : ""),  // the lot's quantity in the base asset
      }));
    }

    chart.subscribeCrosshairMove((param) => {
      if (!param.time || !param.point) { tooltip.hidden = true; return; }
      const here = fills.filter((f) => barTime(f.time) === param.time);
      if (!here.length) { tooltip.hidden = true; return; }
      tooltip.replaceChildren(...here.flatMap((f, i) => {
        const block = document.createElement("div");
        block.className = "fill " + f.side;
        for (const text of fillText(f, places)) { const p = document.createElement("div"); p.textContent = text; block.appendChild(p); }
        return i ? [document.createElement("hr"), block] : [block];
      }));
      tooltip.hidden = false;
      const x = Math.min(param.point.x + 14, container.clientWidth - tooltip.offsetWidth - 4);
      tooltip.style.left = Math.max(0, x) + "px";
      tooltip.style.top = Math.max(0, Math.min(param.point.y + 14, container.clientHeight - tooltip.offsetHeight - 4)) + "px";
    });

    const api = {
      chart, candleSeries: candles,
      setData(data) {
        intervalMs = data.interval_ms || intervalMs;
        places = Number.isInteger(data.quote_decimals) ? data.quote_decimals : places;
        base = data.symbol ? data.symbol.replace(/_[^_]*$/, "") : base;  // BTC_USDT → BTC, as ground/amounts' base_of
        bars = (data.candles || []).map(numbers);
        candles.applyOptions({priceFormat: priceFormat(bars)});
        candles.setData(bars.map((b) => ({time: sec(b.time), open: b.open, high: b.high, low: b.low, close: b.close})));
        volume.setData(bars.map(volumeBar));
        setIndicators(data.indicators);
        fills = (data.fills || []).slice();
        renderMarkers();
        setStops(data.stops);
        container.dataset.bars = String(bars.length);
        if (options.fit !== false) chart.timeScale().fitContent();
      },
      // A candle of the base interval (live): moves the last bar or starts the next one.
      updateCandle(candle) {
        const c = numbers(candle);
        const start = c.time - (c.time % intervalMs);
        const last = bars[bars.length - 1];
        if (last && start < last.time) return;
        let bar;
        if (last && last.time === start) {
          bar = last;
          if (c.time === last.baseTime) { bar.high = Math.max(bar.high, c.high); bar.low = Math.min(bar.low, c.low); bar.volume = (bar.baseVolume || 0) + c.volume; }
          else { bar.baseVolume = bar.volume; bar.high = Math.max(bar.high, c.high); bar.low = Math.min(bar.low, c.low); bar.volume += c.volume; }
          bar.close = c.close;
        } else {
          bar = {time: start, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume, baseVolume: 0};
          bars.push(bar);
        }
        bar.baseTime = c.time;
        candles.update({time: sec(bar.time), open: bar.open, high: bar.high, low: bar.low, close: bar.close});
        volume.update(volumeBar(bar));
        container.dataset.bars = String(bars.length);
      },
      addFill(f) { fills.push(f); renderMarkers(); },
      setStops,
      centreOn(ms, span) {
        const t = barTime(ms), half = (span || 60) * intervalMs / 2000;
        chart.timeScale().setVisibleRange({from: t - half, to: t + half});
        container.scrollIntoView({block: "nearest", behavior: "smooth"});
      },
      // What the chart holds, read back through lightweight-charts' own API (the browser tests use this).
      readBack() {
        const out = {candles: candles.data().map((d) => ({time: d.time * 1000, open: d.open, high: d.high, low: d.low, close: d.close})),
          volume: volume.data().length, lines: {}, markers: markers.markers().map((m) => ({time: m.time * 1000, price: m.price, shape: m.shape})),
          stops: stopLines.map((l) => l.options().price), stopTitles: stopLines.map((l) => l.options().title), panes: chart.panes().length, last: {}};
        for (const [name, s] of Object.entries(lines)) {
          const data = s.data();
          out.lines[name] = data.length;
          out.last[name] = data.length ? data[data.length - 1].value : null;
        }
        return out;
      },
    };
    return api;
  }

  // A dated line chart (equity, drawdown): points [[ms, value], …].
  function line(container, points, options) {
    options = options || {};
    container.classList.add("lw-chart");
    const chart = LC.createChart(container, baseOptions(container));
    const series = chart.addSeries(options.area ? LC.AreaSeries : LC.LineSeries, Object.assign(
      options.area ? {lineColor: options.color, topColor: options.color + "33", bottomColor: options.color + "05"} : {color: options.color},
      {lineWidth: 2, priceLineVisible: false, priceFormat: {type: "price", precision: options.precision === undefined ? 2 : options.precision, minMove: 0.01}},
      options.area && options.invert ? {topColor: options.color + "05", bottomColor: options.color + "55"} : {}));
    function setData(pts) {
      // One value per second at most (lightweight-charts needs strictly increasing times): the last one wins.
      const data = [];
      for (const [t, v] of pts) {
        const time = sec(t);
        if (data.length && data[data.length - 1].time >= time) data[data.length - 1].value = Number(v);
        else data.push({time, value: Number(v)});
      }
      const top = Math.max(1e-12, ...data.map((d) => Math.abs(d.value)));
      const precision = options.precision !== undefined ? options.precision : top >= 100 ? 2 : Math.min(8, Math.ceil(-Math.log10(top)) + 4);
      series.applyOptions({priceFormat: {type: "price", precision, minMove: Math.pow(10, -precision)}});
      series.setData(data);
      container.dataset.points = String(data.length);
      return data.length;
    }
    setData(points);
    chart.timeScale().fitContent();
    return {chart, series, setData};
  }

  global.CdbPriceChart = {create, line, fillText, price, money, percent, quantity, duration, exitReason, counted, isoTime};
})(window);
