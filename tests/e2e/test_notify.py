"""Notifications delivered for real: Apprise ``json://`` to a local HTTP server and ``mailto://`` to a local SMTP
server (aiosmtpd). In-process tests run embedded-style: deliveries go to the notify background thread, so the
database is shared through committed transactions (``transaction=True``)."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from prometheus_client import REGISTRY
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from execution.models import Order, Trade
from ground.logging import JsonFormatter
from notify import dispatch, rules, sender, service
from notify.models import Destination, Notification
from risk.alerts import raise_alert
from tests.support import processes, series
from tests.support.notify_servers import SmtpServer, WebhookServer
from tests.support.processes import ROOT, child_env, free_port, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fast_notify(settings):
    settings.NOTIFY_TIMEOUT_SEC = 2.0
    settings.NOTIFY_RETRY_BACKOFF_SEC = 0.2
    settings.NOTIFY_RETRY_BACKOFF_MAX_SEC = 1.0
    settings.NOTIFY_MAX_ATTEMPTS = 3
    settings.NOTIFY_BURST_LIMIT = 5
    settings.NOTIFY_BURST_WINDOW_SEC = 60.0
    yield
    dispatch.wait_idle(10)


def _client(*perms: str, superuser: bool = False) -> APIClient:
    if superuser:
        user = User.objects.create_superuser("boss", password="pw")
    else:
        user = User.objects.create_user(f"viewer{User.objects.count()}", password="pw")
        for codename in perms:
            user.user_permissions.add(Permission.objects.get(codename=codename))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _texts(server) -> list[str]:
    return [f"{m.get('title', m.get('subject'))}\n{m.get('message', m.get('body'))}" for m in server.received]


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- alerts --------------------------------------------------------------------------------------------------------


def test_a_halt_through_the_api_reaches_every_destination_whose_level_admits_it():
    with WebhookServer() as info, WebhookServer() as critical, WebhookServer() as fills_only, SmtpServer() as mail:
        created = service.seed_from_env(
            ",".join(
                [
                    info.url("info"),
                    critical.url("critical", "level=CRITICAL"),
                    fills_only.url("fills", "topics=fills"),
                    mail.url("level=WARNING&topics=alerts"),
                ]
            )
        )
        assert len(created) == 4 and all(d.source == "env" for d in created)
        client = _client(superuser=True)
        assert client.post("/api/risk/halt/", {"reason": "exchange maintenance"}, format="json").status_code == 200
        assert client.post("/api/risk/release/", {"reason": "checked"}, format="json").status_code == 200

        wait_until(lambda: len(info.received) == 2 and critical.received and mail.received, message="deliveries")
        dispatch.wait_idle(10)
        halted = "Trading HALTED: exchange maintenance"
        assert [m["title"] for m in info.received] == ["[CRITICAL] TRADING_STATE", "[INFO] TRADING_STATE"]
        assert halted in info.received[0]["message"] and "Trading ACTIVE: checked" in info.received[1]["message"]
        assert len(critical.received) == 1 and halted in critical.received[0]["message"]  # INFO release filtered
        assert len(mail.received) == 1 and halted in mail.received[0]["body"]
        assert mail.received[0]["subject"] == "[CRITICAL] TRADING_STATE"
        assert fills_only.received == []
    sent = Notification.objects.filter(status=Notification.Status.SENT)
    assert sent.count() == 4 and all(n.attempts == 1 for n in sent)


def test_a_burst_of_50_alerts_arrives_as_at_most_a_few_messages(settings):
    settings.NOTIFY_BURST_WINDOW_SEC = 15.0  # "a minute", shortened; raising the 50 alerts takes 1-3 s here
    with WebhookServer() as hook:
        service.seed_from_env(hook.url())
        for i in range(50):
            raise_alert("WARNING", "DATA_STALE", f"no data for SYM{i}_USDT since 30 s")
        wait_until(lambda: len(hook.received) >= 6, timeout=40, message="five alerts and a digest")
        dispatch.wait_idle(10)
    assert len(hook.received) == 6  # NOTIFY_BURST_LIMIT messages, then one digest for the rest of the window
    digest = hook.received[-1]
    assert digest["title"] == "45 notifications within 15 s (coalesced)"
    everything = "\n".join(_texts(hook))
    for i in range(50):  # nothing lost: each alert is in a message of its own or in the digest
        assert f"SYM{i}_USDT " in everything
    assert Notification.objects.filter(status=Notification.Status.COALESCED).count() == 45
    assert Notification.objects.filter(status=Notification.Status.SENT).count() == 6


def test_a_refusing_destination_is_retried_then_reported_and_the_next_order_is_not_delayed(sma_cross, settings):
    refused_port = free_port()  # nothing listens there: connection refused
    with WebhookServer(status=500, delay=0.7) as failing, WebhookServer() as healthy:
        service.seed_from_env(f"{failing.url('down')},json://127.0.0.1:{refused_port}/gone,{healthy.url()}")
        names = {d.masked_url.split("/")[2]: d.name for d in Destination.objects.all()}
        raise_alert("CRITICAL", "ORDER_FAILED", "order X failed: exchange says no")
        # Candles through the real bus → a signal → a paper order, filled at the next candle's open.
        series.publish_all(series.filled_events())
        order = Order.objects.get()
        assert order.status == Order.Status.FILLED
        # The order was decided and filled while the failing destination was still being tried.
        stuck = Notification.objects.get(destination_name=names[f"127.0.0.1:{failing.port}"], topic="alerts")
        assert stuck.status in (Notification.Status.QUEUED, Notification.Status.RETRYING)

        wait_until(
            lambda: Notification.objects.filter(status=Notification.Status.FAILED).count() == 2,
            timeout=30,
            message="both bad destinations given up on",
        )
        dispatch.wait_idle(10)
        assert len(failing.received) == 3  # NOTIFY_MAX_ATTEMPTS
        assert any(m["title"] == "[CRITICAL] ORDER_FAILED" for m in healthy.received)

    failed = Notification.objects.filter(status=Notification.Status.FAILED)
    assert {n.attempts for n in failed} == {3} and all(n.error for n in failed)
    for host, name in names.items():
        if host == f"127.0.0.1:{healthy.port}":
            continue
        destination = Destination.objects.get(name=name)
        assert destination.consecutive_failures == 1 and destination.last_failure_at
        assert _sample("notifications_sent_total", destination=name, result="failed") >= 1
        assert _sample("notifications_sent_total", destination=name, result="retried") >= 2
    assert _sample("notifications_sent_total", destination=names[f"127.0.0.1:{healthy.port}"], result="sent") >= 1

    health = _client().get("/api/status/").json()["health"]["notifications"]
    assert health["ok"] is False
    assert names[f"127.0.0.1:{failing.port}"] in health["detail"] and f"{refused_port}" in health["detail"]


# --- fills and the daily report ------------------------------------------------------------------------------------


def _entry_then_stop_loss() -> list[dict]:
    # A BUY decided at the cross fills at the next open (110.5); the close 100 trips its stop-loss, whose SELL
    # fills at the open of the candle after.
    prices = series.crossing_prices() + [110.5, 100.0, 100.0]
    return series.events(prices=prices)


def test_fills_carry_symbol_side_quantity_price_fee_and_the_exit_pnl(sma_cross):
    with WebhookServer() as hook:
        service.seed_from_env(hook.url(query="topics=fills"))
        series.publish_all(_entry_then_stop_loss())
        wait_until(lambda: len(hook.received) >= 2, message="two fills")
        dispatch.wait_idle(10)
    entry, exit_ = Order.objects.order_by("event_time")
    assert (entry.price, exit_.price) == (Decimal("110.55525"), Decimal("99.95"))  # 110.5 × 1.0005, 100 × 0.9995
    trade = Trade.objects.get()
    assert [m["title"] for m in hook.received] == ["Fill: BUY TEST_USDT", "Fill: SELL TEST_USDT"]
    first, second = (m["message"] for m in hook.received)
    # the quantity exact in the base asset, the price to 6 significant digits (110.55525 → 110.555, half even)
    assert f"BUY {format(entry.filled_quantity.normalize(), ',f')} TEST @ 110.555 USDT" in first
    assert f"fee {entry.fees.quantize(Decimal('0.01'))} USDT" in first and "P&L" not in first
    assert f"SELL {format(exit_.filled_quantity.normalize(), ',f')} TEST @ 99.95 USDT" in second  # 99.9500 → 2 places
    assert f"P&L {trade.profit_loss.quantize(Decimal('0.01'))} USDT" in second and trade.profit_loss < 0


def _number(pattern: str, text: str) -> Decimal:
    found = re.search(pattern, text)
    assert found, (pattern, text)
    return Decimal(found.group(1))


def test_the_daily_report_figures_equal_api_status(sma_cross):
    series.publish_all(_entry_then_stop_loss() + series.filled_events(symbol="HOLD_USDT"))  # one closed, one open
    with WebhookServer() as hook:
        service.seed_from_env(hook.url(query="topics=daily"))
        result = processes.run(
            [sys.executable, "manage.py", "notify", "--daily-report"],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        status = _client().get("/api/status/").json()
    assert "sent to" in result.stdout
    assert len(hook.received) == 1
    text = hook.received[0]["message"]
    account = status["account"]
    assert hook.received[0]["title"].startswith("Daily report ") and status["mode"] in hook.received[0]["title"]
    assert f"Trading state: {status['trading_state']['state']}" in text
    cents = Decimal("0.01")  # the report reads USDT to the cent (ground.amounts)
    assert _number(r"Equity: (-?[\d.]+) USDT", text.replace(",", "")) == Decimal(account["equity"]).quantize(cents)
    assert _number(r"Day's P&L: \+?(-?[\d.]+) USDT", text.replace(",", "")) == Decimal(account["daily_pnl"]).quantize(
        cents
    )
    assert abs(_number(r"Drawdown: (-?[\d.]+) %", text) / 100 - Decimal(str(account["drawdown_pct"]))) < Decimal(
        "0.00005"
    )
    assert int(_number(r"Open positions: (\d+)", text)) == account["open_positions"] == 1
    from notify.report import daily_report

    report = daily_report()
    for key in ("equity", "daily_pnl", "drawdown_pct", "open_positions"):
        assert report[key] == account[key], key
    closed_today = Trade.objects.filter(status="CLOSED", exit_time__date=report["day"]).count()
    assert report["trades"] == closed_today and f"Trades closed: {closed_today}" in text


def test_the_daily_report_on_demand_from_the_api_and_the_admin_button():
    with WebhookServer() as hook:
        service.seed_from_env(hook.url(query="topics=daily"))
        assert _client().post("/api/notifications/daily-report/").status_code == 403
        answer = _client("send_notifications").post("/api/notifications/daily-report/")
        assert answer.status_code == 202 and answer.json() == {"queued": 1}
        admin = APIClient()
        admin.force_login(User.objects.create_superuser("root", password="pw"))
        page = admin.get("/admin/notify/notification/")
        assert b"Send daily report now" in page.content
        assert admin.post("/admin/notify/notification/daily-report/").status_code == 302
        wait_until(lambda: len(hook.received) == 2, message="two reports")
    assert all(m["title"].startswith("Daily report") for m in hook.received)


# --- secrets ------------------------------------------------------------------------------------------------------


def test_a_secret_in_a_url_never_appears_in_logs_the_admin_or_the_api():
    secret, mail_secret = "HookPass-7731", "Mail-Secret-42"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        with WebhookServer(status=500) as failing, SmtpServer(password=mail_secret) as mail:
            service.seed_from_env(
                f"{failing.url(credentials='cdb:' + secret)},{mail.url()},"
                "tgram://123456789:ABCdefGhIJKlmnoPQRstu/-100123456?level=CRITICAL"
            )
            Destination.objects.filter(masked_url__startswith="tgram").update(enabled=False)
            raise_alert("WARNING", "RISK_LIMIT", "exposure 82 % of the limit")
            wait_until(
                lambda: Notification.objects.filter(status__in=["SENT", "FAILED"]).count() == 2,
                timeout=30,
                message="one delivery and one failure",
            )
            for destination in Destination.objects.all():  # even a careless log line of the raw URL is masked
                logging.getLogger("cdb.test").warning("destination %s", destination.url)
            assert failing.received and failing.received[0]["auth"]  # the password was really used
            assert mail.received
            result = processes.run(
                [sys.executable, "manage.py", "notify", "--test"],
                cwd=ROOT,
                env=child_env(LOG_LEVEL="DEBUG"),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 1  # the 500 destination failed, the mail went out
            assert "FAILED" in result.stdout and "sent to" in result.stdout
    finally:
        logging.getLogger().removeHandler(handler)

    admin = APIClient()
    admin.force_login(User.objects.create_superuser("root", password="pw"))
    pages = [admin.get("/admin/notify/destination/").content.decode()]
    for destination in Destination.objects.all():
        pages.append(admin.get(f"/admin/notify/destination/{destination.pk}/change/").content.decode())
    pages.append(admin.get("/admin/notify/notification/").content.decode())
    api = _client()
    pages.append(api.get("/api/notifications/destinations/").content.decode())
    pages.append(api.get("/api/notifications/").content.decode())
    pages.append(api.get("/api/status/").content.decode())
    logs = stream.getvalue() + result.stdout + result.stderr
    assert "given up" in logs or "failed (attempt" in logs  # the failure was logged, masked
    stored = " ".join(Notification.objects.values_list("error", flat=True)) + " ".join(
        Destination.objects.values_list("last_error", flat=True)
    )
    for text in [*pages, logs, stored]:
        for value in (secret, mail_secret, "ABCdefGhIJKlmnoPQRstu"):
            assert value not in text
    assert "tgram://1...u/-100123456" in pages[0]  # shown masked


def test_the_admin_replaces_a_url_only_when_a_new_one_is_typed():
    with WebhookServer() as hook:
        admin = APIClient()
        admin.force_login(User.objects.create_superuser("root", password="pw"))
        answer = admin.post(
            "/admin/notify/destination/add/",
            {
                "name": "",
                "new_url": hook.url(credentials="u:Typed-Secret-9", query="level=WARNING"),
                "level": "INFO",
                "topics": ["alerts"],
                "enabled": "on",
            },
        )
        assert answer.status_code == 302, answer.content.decode()[:2000]
        destination = Destination.objects.get()
        assert destination.level == "WARNING" and destination.topics == ["alerts"] and destination.source == "admin"
        assert "Typed-Secret-9" in destination.url and "Typed-Secret-9" not in destination.masked_url
        change = f"/admin/notify/destination/{destination.pk}/change/"
        answer = admin.post(
            change,
            {"name": "ops hook", "new_url": "", "level": "CRITICAL", "topics": ["alerts", "fills"], "enabled": "on"},
        )
        assert answer.status_code == 302
        destination.refresh_from_db()
        assert (
            destination.name == "ops hook" and destination.level == "CRITICAL" and "Typed-Secret-9" in destination.url
        )
        bad = admin.post(
            change, {"name": "ops hook", "new_url": "nosuch://Bad-Secret-1@x", "level": "INFO", "topics": ["alerts"]}
        )
        assert bad.status_code == 200 and "Apprise cannot load" in bad.content.decode()
        assert "Bad-Secret-1" not in bad.content.decode()
        action = admin.post("/admin/notify/destination/", {"action": "send_test", "_selected_action": [destination.pk]})
        assert action.status_code == 302
        wait_until(lambda: hook.received, message="the test message from the admin action")
        assert hook.received[0]["title"] == "Claire de Binare: test message"
        assert hook.received[0]["auth"]  # sent with the stored credentials


def test_manage_py_notify_test_reaches_mail_and_webhook_seeded_from_the_environment():
    with WebhookServer() as hook, SmtpServer() as mail:
        env = child_env(NOTIFY_URLS=f"{hook.url()},{mail.url()}")
        result = processes.run(
            [sys.executable, "manage.py", "notify", "--test"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert hook.received[0]["title"] == "Claire de Binare: test message"
    assert mail.received[0]["subject"] == "Claire de Binare: test message" and mail.received[0]["to"] == [
        "ops@example.com"
    ]
    assert Destination.objects.filter(source="env").count() == 2
    listed = processes.run(
        [sys.executable, "manage.py", "notify", "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0 and "mailto://cdb:****@127.0.0.1" in listed.stdout
    assert mail.password not in listed.stdout + listed.stderr
    assert os.environ.get("NOTIFY_URLS") is None  # the test's own process was not configured


def test_an_embedded_halt_command_sends_its_alert_before_the_process_exits(tmp_path):
    # Embedded (SQLite, no Redis), the notify thread of a short-lived `manage.py halt` used to die with the process:
    # no message and no stored row. Now what is queued at exit is sent then.
    with WebhookServer() as hook:
        env = {k: v for k, v in child_env(NOTIFY_URLS=hook.url()).items() if k != "REDIS_URL"}
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'embedded.sqlite3'}"
        for args in (["migrate", "--noinput"], ["halt", "--reason", "embedded halt, told at once"]):
            result = processes.run(
                [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
            )
            assert result.returncode == 0, result.stdout + result.stderr
    assert any("embedded halt, told at once" in message["message"] for message in hook.received), hook.received


def test_secrets_in_headers_and_payload_fields_are_masked_and_a_space_in_a_header_survives():
    spec = rules.parse_destination("json://127.0.0.1:9/hook?+Authorization=Bearer%20TopSecretTok&-apikey=KeySecret99")
    assert "Bearer%20TopSecretTok" in spec.url  # a space stays a space for Apprise (not '+')
    described = sender.describe(spec.url)
    assert "TopSecretTok" not in described.masked and "KeySecret99" not in described.masked
    assert any("TopSecretTok" in piece for piece in described.secrets)
