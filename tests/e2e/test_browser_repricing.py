"""The dashboard re-prices a held position from a pushed candle: the rows and the cards (equity, exposure, daily P&L,
unrealized) from the same price, so one read of the page agrees with itself (issue 22, review). The page's 10 s
refresh is switched off in the browser, so only the push can have moved the cards."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from execution.models import Order, Position
from tests.e2e.test_browser_dashboard import (  # noqa: F401
    _login,
    _orm_beside_playwright,
    _user,
    expect,
    off_loop,
    page,
    server,
)
from tests.support import series

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NO_REFRESH = """
const every = window.setInterval;
window.setInterval = (fn, ms, ...rest) => (ms === 10000 ? 0 : every(fn, ms, ...rest));
"""

READ = """() => {
  const n = (id) => Number(document.getElementById(id).textContent.replace(/[^0-9.-]/g, ""));
  const rows = [...document.querySelectorAll("#positions tbody tr")]
    .map((tr) => [...tr.cells].map((c) => c.textContent));
  const cash = /cash (-?[\\d,.]+)/.exec(document.getElementById("cash").textContent)[1].replace(/,/g, "");
  return {equity: n("equity"), exposure: n("exposure"), daily: n("daily-pnl"), cash: Number(cash),
    unrealized: n("unrealized"), rows};
}"""


def _figures(browser_page):
    read = browser_page.evaluate(READ)
    values = [Decimal(r[1].replace(",", "")) * Decimal(r[3].replace(",", "")) for r in read["rows"]]
    unrealized = [Decimal(r[4].split(" ")[0].replace(",", "").replace("+", "")) for r in read["rows"]]
    return read, sum(values, Decimal(0)), sum(unrealized, Decimal(0))


def test_a_pushed_price_moves_the_rows_and_the_cards_together(server, page, sma_cross):  # noqa: F811
    _user("operator", staff=True)
    # The crossing's BUY, filled at the next candle's open: one open position in TEST_USDT.
    evts = series.filled_events()
    off_loop(series.publish_all, evts)
    position = Position.objects.get(symbol="TEST_USDT")
    assert position.quantity > 0
    page.add_init_script(NO_REFRESH)
    _login(page, server.port, "operator")
    expect(page.locator("#positions tbody tr")).to_have_count(1)
    before, _, _ = _figures(page)

    # A candle well above the entry: the row's price is the pushed close.
    candle = series.next_event(evts, open_=125.0, close=125.0)
    off_loop(series.publish_all, [candle])
    expect(page.locator("#positions tbody tr").first.locator("td").nth(3)).to_have_text(re.compile(r"^125(\.0*)?$"))
    after, held_value, rows_unrealized = _figures(page)

    cent = Decimal("0.011")  # each figure is rounded to the cent on its own
    assert abs(Decimal(str(after["unrealized"])) - rows_unrealized) <= cent, after
    assert abs(Decimal(str(after["exposure"])) - held_value) <= cent, after
    assert abs(Decimal(str(after["equity"])) - Decimal(str(after["cash"])) - held_value) <= cent, after
    moved = Decimal(str(after["equity"])) - Decimal(str(before["equity"]))
    assert moved > 0
    assert abs(Decimal(str(after["daily"])) - Decimal(str(before["daily"])) - moved) <= 2 * cent, (before, after)
    assert not page.js_errors, page.js_errors


def test_a_placed_order_moves_the_cards_at_once(server, page, sma_cross):  # noqa: F811
    """An approved order waiting for its fill counts in the account (a BUY in the exposure): the page is told it
    was placed and reads the account again, without waiting for the 10 s refresh (switched off here)."""
    from ground.amounts import money
    from risk.status import account_summary

    _user("operator", staff=True)
    page.add_init_script(NO_REFRESH)
    _login(page, server.port, "operator")
    expect(page.locator("#exposure")).to_have_text("0.00")
    off_loop(series.publish_all, series.events())  # ends on the crossing: its BUY waits for the next candle
    assert Order.objects.filter(symbol="TEST_USDT", status="PENDING").count() == 1
    exposure = account_summary()["exposure"]
    assert Decimal(exposure) > 0
    expect(page.locator("#exposure")).to_have_text(money(exposure))
    assert not page.js_errors, page.js_errors


# The page's own timers off (the 10 s refresh, the 1 s refresh after a fill, the 3 s chart reload after candles):
# only a push can move the clock card or take a stop line off the chart.
NO_TIMERS = """
const every = window.setInterval, later = window.setTimeout;
window.setInterval = (fn, ms, ...rest) => (ms === 10000 ? 0 : every(fn, ms, ...rest));
window.setTimeout = (fn, ms, ...rest) => (ms === 1000 || ms === 3000 ? 0 : later(fn, ms, ...rest));
"""


def test_pushed_rows_move_the_clocks_and_a_closing_sell_takes_its_stop_off(server, page, sma_cross):  # noqa: F811
    """Issue 22, review: "Market time" and the wall clock moved only with the 10 s refresh while rows arrived live
    (an order at 19:46 under "Market time 19:42"), and a closed lot's stop line stayed on the chart until a reload.
    Here the market clock is the system's (live): it moves as the wall clock does."""
    from ground import bus
    from tests.e2e.test_browser_dashboard import _signal

    _user("operator", staff=True)
    evts = series.filled_events()  # the crossing's BUY, filled: one open lot with its stop
    off_loop(series.publish_all, evts)
    page.add_init_script(NO_TIMERS)
    _login(page, server.port, "operator")
    expect(page.locator("#price-chart")).to_have_attribute("data-state", "ready")
    assert len(page.evaluate("window.cdbCharts.price.readBack().stops")) == 1
    market, wall = page.locator("#clock-market").text_content(), page.locator("#clock-wall").text_content()

    later = [110.5, 111.2, 112.0, 112.4, 113.1]
    later_events = series.events(prices=later, base_ts=evts[-1]["timestamp"] + series.STEP_MS)
    off_loop(series.publish_all, later_events)
    exit_ts = later_events[-1]["timestamp"]
    sell = {**_signal("TEST_USDT", exit_ts), "side": "SELL", "price": later[-1], "reason": "take profit"}
    off_loop(bus.publish, sell)
    off_loop(bus.publish, series.next_event(later_events, open_=113.0, close=113.2))  # the SELL fills: lot closed
    expect(page.locator("#order-results tbody tr").first).to_contain_text("SELL")
    page.wait_for_function("() => window.cdbCharts.price.readBack().stops.length === 0")
    expect(page.locator("#clock-market")).not_to_have_text(market)
    expect(page.locator("#clock-wall")).not_to_have_text(wall)
    assert not page.js_errors, page.js_errors
