"""The ccxt-based MEXC feed against a fake MEXC server on 127.0.0.1 (REST klines + protobuf websocket pushes)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections

from ground import bus
from marketdata.feeds.mexc import MexcFeed, backoff_delay, make_exchange
from marketdata.feeds.mexc_runner import CandleSink
from marketdata.models import Candle, DataFreshness
from tests.support import processes
from tests.support.fake_mexc import FakeMexc, klines_from_csv
from tests.support.paths import CANDLES
from tests.support.processes import wait_until

SOURCE = CANDLES / "UNITTEST_BTC-1m.csv"
SYMBOL, MARKET_ID = "UNITTEST_BTC", "UNITTESTBTC"
START = 100  # index of the fake market's running candle when a test starts

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def only_the_feed(settings):
    bus._consumers.cache_clear()
    settings.EVENT_CONSUMERS = {}
    yield
    bus._consumers.cache_clear()


@pytest.fixture(params=["back to back"])
def fake(settings, request):
    """A fake MEXC with recorded UNITTEST_BTC candles, re-timed back to back, or as recorded (with quiet gaps)."""
    every = 60_000 if request.param == "back to back" else None
    server = FakeMexc({MARKET_ID: klines_from_csv(SOURCE, limit=400, every_ms=every)}, position=START).start()
    for name, value in server.settings().items():
        setattr(settings, name, value)
    yield server
    server.stop()


class FeedThread:
    """The real feed (real ccxt client, real sink and database) on its own event loop in a thread."""

    def __init__(self, **options) -> None:
        self.options = {
            "backfill": 20,
            "backoff_base": 0.05,
            "backoff_cap": 0.5,
            "poll_seconds": 0.2,
            "idle_seconds": 0.2,
            **options,
        }
        self.db = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # one thread, one DB connection
        self.feed: MexcFeed | None = None
        self.error: BaseException | None = None
        self.stopped = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            kind = "async" if self.options.get("transport") == "rest" else "pro"
            exchange = make_exchange(kind)
            self.feed = MexcFeed(
                exchange,
                [SYMBOL],
                "1m",
                CandleSink("1m"),
                run_sync=lambda func, *args: self.loop.run_in_executor(self.db, func, *args),
                **self.options,
            )
            self._ready.set()
            try:
                await self.feed.run(self.stop_event)
            finally:
                await exchange.close()

        try:
            asyncio.run(run())
        except BaseException as error:  # surfaced by stop()
            self.error = error
            self._ready.set()

    def start(self) -> FeedThread:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self._thread.join(15)
        self.db.submit(connections.close_all).result(5)
        self.db.shutdown()
        if self.error:
            raise self.error


RUNNING: list[FeedThread] = []


@pytest.fixture
def feed_thread():
    started: list[FeedThread] = []

    def start(**options) -> FeedThread:
        thread = FeedThread(**options).start()
        started.append(thread)
        RUNNING.append(thread)
        return thread

    yield start
    for thread in started:
        RUNNING.remove(thread)
        thread.stop()


def stored() -> list[int]:
    return list(
        Candle.objects.filter(symbol=SYMBOL, interval="1m").order_by("timestamp").values_list("timestamp", flat=True)
    )


def expected(fake: FakeMexc, first_index: int) -> list[int]:
    return [k.t for k in fake.closed(MARKET_ID)[first_index:]]


def wait_stored(fake: FakeMexc, first_index: int, timeout: float = 20) -> None:
    want = expected(fake, first_index)

    def done() -> bool:
        for thread in RUNNING:
            if thread.error:
                raise AssertionError("the feed stopped") from thread.error
        return stored() == want

    try:
        wait_until(done, timeout=timeout, message=f"candles {first_index}…{len(want) + first_index - 1}")
    except AssertionError:
        print("stored:", stored(), "\nwanted:", want, [t.feed.stats for t in RUNNING if t.feed])
        raise


def published_through_the_next_candle(fake: FakeMexc, published: list[dict], first_index: int) -> list[int]:
    """What went out on the bus, up to one more candle closed now: the feed publishes in order, so once that marker
    is out, whatever it published before it (a duplicate, a running candle) is in the list."""
    fake.step()
    marker = expected(fake, first_index)[-1]
    wait_until(lambda: marker in [e["timestamp"] for e in published], timeout=20, message="the next candle published")
    return [e["timestamp"] for e in published]


def ws_requests(fake: FakeMexc) -> int:
    return sum(1 for path, _ in fake.requests if path == "/ws")


def assert_values_match(fake: FakeMexc) -> None:
    by_ts = {k.t: k for k in fake.history[MARKET_ID]}
    for candle in Candle.objects.filter(symbol=SYMBOL):
        k = by_ts[candle.timestamp]
        assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == tuple(
            Decimal(x) for x in (k.o, k.h, k.l, k.c, k.v)
        ), candle.timestamp


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    assert [backoff_delay(n, 1, 60, rand=lambda: 0.0) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert [backoff_delay(n, 1, 60, rand=lambda: 1.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert len({backoff_delay(3, 1, 60) for _ in range(20)}) > 1


def test_ccxt_talks_to_the_fake_server(fake):
    exchange = make_exchange("sync")
    markets = exchange.load_markets()
    assert "UNITTEST/BTC" in markets and markets["UNITTEST/BTC"]["id"] == MARKET_ID
    candles = exchange.fetch_ohlcv("UNITTEST/BTC", "1m", limit=5)
    assert [c[0] for c in candles] == [k.t for k in fake.history[MARKET_ID][START - 4 : START + 1]]
    assert fake.kline_requests()[-1]["symbol"] == MARKET_ID and fake.kline_requests()[-1]["interval"] == "1m"


def test_websocket_feed_stores_what_the_server_sends_then_reconnects_and_backfills(fake, feed_thread, published):
    feed = feed_thread(transport="ws")
    wait_stored(fake, START - 20)  # start-up: the last 20 closed candles through REST, not the running one
    wait_until(lambda: fake.subscribed() == 1, message="the kline subscription")
    requests_before = len(fake.kline_requests())

    for _ in range(5):
        fake.step()
        wait_stored(fake, START - 20)
    # the feed counts a candle just after storing it
    wait_until(lambda: feed.feed.stats.ws_candles == 5, message="the five closed candles over the websocket")
    assert len(fake.kline_requests()) == requests_before, "… without a single REST request"

    # the server drops the socket; four candles close while the feed is away
    dropped_at = ws_requests(fake)
    fake.drop()
    wait_until(lambda: feed.feed.stats.reconnects >= 1, message="the feed noticing the drop")
    for _ in range(4):
        fake.step()
    wait_until(lambda: ws_requests(fake) > dropped_at, message="a reconnection the server refuses")
    fake.allow()
    wait_until(lambda: fake.subscribed() == 1, timeout=20, message="the resubscription")
    fake.step()
    fake.step()
    wait_stored(fake, START - 20)
    assert len(fake.kline_requests()) > requests_before  # the gap came through REST
    assert fake.connections >= 2

    timestamps = published_through_the_next_candle(fake, published, START - 20)
    assert timestamps == expected(fake, START - 20), "every closed candle published once, in order, no hole"
    assert_values_match(fake)  # final values, never the running candle's partial ones
    assert DataFreshness.objects.filter(symbol=SYMBOL).exists()


@pytest.mark.parametrize("fake", ["back to back", "as recorded"], indirect=True)
def test_rest_polling_stores_closed_candles_only(fake, feed_thread, published):
    feed_thread(transport="rest", backfill=5)
    wait_stored(fake, START - 5)
    for _ in range(3):
        fake.step()
    wait_stored(fake, START - 5)
    polls = len(fake.kline_requests())
    wait_until(lambda: len(fake.kline_requests()) >= polls + 3, message="three more polls")
    assert stored() == expected(fake, START - 5), "nothing new, nothing twice"
    assert fake.history[MARKET_ID][fake.position[MARKET_ID]].t not in stored(), "the running candle waits"
    assert published_through_the_next_candle(fake, published, START - 5) == expected(fake, START - 5)
    assert_values_match(fake)


@pytest.mark.parametrize("fake", ["back to back", "as recorded"], indirect=True)
def test_a_restarted_feed_resumes_after_the_last_stored_candle(fake, feed_thread, published):
    first = feed_thread(transport="ws", backfill=10)
    wait_stored(fake, START - 10)
    first.stop()
    for _ in range(7):
        fake.step()
    subscribed_before = fake.subscriptions
    feed_thread(transport="ws", backfill=10)
    wait_stored(fake, START - 10)
    wait_until(lambda: fake.subscriptions > subscribed_before, message="the second feed's kline subscription")
    assert published_through_the_next_candle(fake, published, START - 10) == expected(fake, START - 10)
    last_request = fake.kline_requests()[-1]
    assert "startTime" not in last_request or int(last_request["startTime"]) > fake.history[MARKET_ID][START - 1].t


def test_urls_are_configurable(settings):
    settings.MEXC_REST_URL = "http://127.0.0.1:9"
    settings.MEXC_WS_URL = "ws://127.0.0.1:9/ws"
    exchange = make_exchange("sync")
    assert exchange.urls["api"]["spot"]["public"] == "http://127.0.0.1:9"
    assert django_settings.MEXC_WS_URL == "ws://127.0.0.1:9/ws"


@pytest.mark.postgres
def test_the_run_feed_command_streams_from_the_fake_mexc(fake, service_env, tmp_path):
    """The real command in its own process: ``run_feed --source mexc`` against the fake server."""
    import signal
    import subprocess
    import sys

    env = {**service_env, **fake.settings(), "REDIS_URL": ""}  # embedded tasks: the child publishes in-process
    log = (tmp_path / "feed.log").open("w")
    proc = processes.start(
        [sys.executable, "manage.py", "run_feed", "--source", "mexc", "--symbols", SYMBOL, "--backfill", "10"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_stored(fake, START - 10, timeout=60)
        wait_until(lambda: fake.subscribed() == 1, timeout=30, message="the kline subscription")
        for _ in range(3):
            fake.step()
        wait_stored(fake, START - 10, timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
        log.close()
    output = (tmp_path / "feed.log").read_text()
    assert code == 0, output
    assert "MEXC feed: UNITTEST_BTC 1m over auto" in output and "stopped" in output
    assert_values_match(fake)
