"""The dashboard websocket on a running daphne: logged-in users only, a snapshot on connect, then live bus events."""

import pytest
from django.contrib.auth.models import Permission, User

from ground import bus
from risk import state as trading_state
from risk.models import TradingState
from tests.support.processes import wait_until
from tests.support.ws import DashboardClient, session_cookie

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ORDER_RESULT = {
    "type": "order_result",
    "order_id": "PAPER_1",
    "client_order_id": "cdbwebsockettest",
    "status": "FILLED",
    "filled_quantity": 0.5,
    "price": 101.25,
    "fees": 0.05,
    "timestamp": 1730443262000,
    "symbol": "ETH_USDT",
    "side": "BUY",
}


def _user(name: str, *perms: str) -> User:
    user = User.objects.create_user(name, password="pw-" + name)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def test_connected_client_receives_order_results_alerts_and_state(daphne_server):
    client = DashboardClient(daphne_server.port, cookie=session_cookie(_user("viewer")))
    try:
        snapshot = wait_until(lambda: client.pushed("snapshot"), message="the snapshot")[0]
        assert snapshot["trading_state"]["state"] == "ACTIVE"

        bus.publish(dict(ORDER_RESULT))
        pushed = wait_until(lambda: client.pushed("order_results"), message="the order_result")
        assert pushed == [ORDER_RESULT]

        trading_state.halt("websocket test", actor="tester")
        state = wait_until(lambda: client.pushed("trading_state"), message="the state change")[0]
        assert state["state"] == "HALTED" and state["reason"] == "websocket test"
        alerts = client.pushed("alerts")
        assert alerts and alerts[-1]["code"] == "TRADING_STATE" and alerts[-1]["level"] == "CRITICAL"
    finally:
        client.close()


def test_pushes_gathered_into_one_message_reach_the_browser_one_frame_each_in_order(daphne_server):
    client = DashboardClient(daphne_server.port, cookie=session_cookie(_user("viewer")))
    try:
        wait_until(lambda: client.pushed("snapshot"), message="the snapshot")
        results = [{**ORDER_RESULT, "client_order_id": f"cdbwebsocket{n:04d}"} for n in range(20)]
        for result in results:  # well within the pusher's gathering pause: one dashboard.push_many
            bus.publish(dict(result))
        pushed = wait_until(lambda: len(client.pushed("order_results")) >= 20 and client.pushed("order_results"))
        assert pushed == results
    finally:
        client.close()


def test_anonymous_and_forged_sessions_are_refused(daphne_server):
    for cookie in (None, "sessionid=not-a-session"):
        with pytest.raises(RuntimeError, match="403"):
            DashboardClient(daphne_server.port, cookie=cookie)


def test_halt_over_the_websocket_needs_the_permission(daphne_server):
    viewer = DashboardClient(daphne_server.port, cookie=session_cookie(_user("viewer")))
    operator = DashboardClient(daphne_server.port, cookie=session_cookie(_user("operator", "halt_trading")))
    try:
        wait_until(lambda: viewer.pushed("snapshot") and operator.pushed("snapshot"), message="both snapshots")
        viewer.send({"action": "halt", "reason": "not mine to halt"})
        error = wait_until(lambda: viewer.pushed("error"), message="the refusal")[0]
        assert error["status"] == 403 and error["action"] == "halt"
        assert TradingState.load().state == "ACTIVE"

        operator.send({"action": "halt", "reason": ""})
        assert wait_until(lambda: operator.pushed("error"), message="the missing reason")[0]["status"] == 400
        operator.send({"action": "halt", "reason": "from the websocket"})
        ack = wait_until(lambda: operator.pushed("ack"), message="the halt ack")[0]
        assert ack["trading_state"]["state"] == "HALTED" and ack["trading_state"]["changed_by"] == "operator"
        assert ack["trading_state"]["changed"] is True
        assert TradingState.load().state == "HALTED"
        operator.send({"action": "halt", "reason": "twice"})  # said, not silently kept
        again = wait_until(lambda: len(operator.pushed("ack")) == 2 and operator.pushed("ack"), message="ack 2")[1]
        assert again["trading_state"]["changed"] is False
        assert again["trading_state"]["message"].startswith("Trading is HALTED already")
        # every open dashboard hears about it
        assert wait_until(lambda: viewer.pushed("trading_state"), message="the push")[0]["state"] == "HALTED"

        viewer.send({"action": "snapshot"})
        wait_until(lambda: len(viewer.pushed("snapshot")) == 2, message="a resync snapshot")
        assert viewer.pushed("snapshot")[1]["trading_state"]["state"] == "HALTED"
    finally:
        viewer.close()
        operator.close()


def _closed(client: DashboardClient) -> bool:
    return not client._thread.is_alive()


def test_revoked_rights_end_control_on_an_open_socket(daphne_server):
    # The permission is read again at every action: removed, the next halt is refused on the same socket.
    operator = _user("operator", "halt_trading")
    client = DashboardClient(daphne_server.port, cookie=session_cookie(operator))
    try:
        wait_until(lambda: client.pushed("snapshot"), message="the snapshot")
        operator.user_permissions.clear()
        client.send({"action": "halt", "reason": "no longer mine"})
        error = wait_until(lambda: client.pushed("error"), message="the refusal")[0]
        assert (error["status"], error["action"]) == (403, "halt") and "permission" in error["detail"]
        assert TradingState.load().state == "ACTIVE" and not client.pushed("ack")
    finally:
        client.close()


def test_deactivating_the_user_closes_the_socket_and_nothing_goes_through(daphne_server):
    operator = _user("operator", "halt_trading")
    client = DashboardClient(daphne_server.port, cookie=session_cookie(operator))
    wait_until(lambda: client.pushed("snapshot"), message="the snapshot")
    operator.is_active = False
    operator.save()
    wait_until(lambda: _closed(client), message="the socket closed by the server")
    assert "4401" in str(client.error)
    assert TradingState.load().state == "ACTIVE"


def test_a_session_ended_without_a_signal_is_refused_at_the_next_action(daphne_server):
    # Sessions deleted behind the server's back (no logout signal): the next action finds the session gone, is
    # refused with 401 and the socket is closed; a deactivation by a bulk update is caught the same way.
    from django.contrib.sessions.models import Session

    operator = _user("operator", "halt_trading")
    client = DashboardClient(daphne_server.port, cookie=session_cookie(operator))
    wait_until(lambda: client.pushed("snapshot"), message="the snapshot")
    Session.objects.all().delete()
    client.send({"action": "release", "reason": "should not pass"})
    wait_until(lambda: _closed(client), message="the socket closed")
    assert [e["status"] for e in client.pushed("error")] == [401] and not client.pushed("ack")

    other = _user("other", "halt_trading")
    client = DashboardClient(daphne_server.port, cookie=session_cookie(other))
    wait_until(lambda: client.pushed("snapshot"), message="the snapshot")
    User.objects.filter(pk=other.pk).update(is_active=False)
    client.send({"action": "halt", "reason": "should not pass"})
    wait_until(lambda: _closed(client), message="the socket closed")
    assert TradingState.load().state == "ACTIVE"


def test_logging_out_closes_the_sockets_of_that_session(daphne_server):
    from django.test import Client

    operator = _user("operator", "halt_trading")
    browser = Client()
    browser.force_login(operator)
    client = DashboardClient(daphne_server.port, cookie=f"sessionid={browser.cookies['sessionid'].value}")
    wait_until(lambda: client.pushed("snapshot"), message="the snapshot")
    browser.post("/accounts/logout/")
    wait_until(lambda: _closed(client), message="the socket closed at logout")
    assert "4401" in str(client.error)


def test_only_the_dashboards_own_origin_may_open_the_socket(service_env, tmp_path):
    # Another port of the same host (Grafana :3000, Prometheus :9090), another scheme or host: refused, cookie or
    # not. An origin listed in CSRF_TRUSTED_ORIGINS is accepted, as Django's CSRF check accepts it for forms.
    from tests.support.processes import start_daphne

    server = start_daphne({**service_env, "CSRF_TRUSTED_ORIGINS": "https://ops.example:8443"}, tmp_path)
    port = server.port
    cookie = session_cookie(_user("operator", "halt_trading"))
    try:
        for origin in (
            "http://127.0.0.1:3000",
            "http://127.0.0.1:9090",
            f"https://127.0.0.1:{port}",
            f"http://evil.example:{port}",
            "https://ops.example:443",
            "null",
        ):
            with pytest.raises(RuntimeError, match="403"):
                DashboardClient(port, cookie=cookie, origin=origin)
        for origin in (f"http://127.0.0.1:{port}", "https://ops.example:8443"):
            client = DashboardClient(port, cookie=cookie, origin=origin)
            wait_until(lambda client=client: client.pushed("snapshot"), message=f"the snapshot for {origin}")
            client.close()
    finally:
        server.stop()


def test_non_json_and_binary_frames_get_an_error_and_the_socket_stays_open(daphne_server):
    client = DashboardClient(daphne_server.port, cookie=session_cookie(_user("viewer")))
    try:
        wait_until(lambda: client.pushed("snapshot"), message="the snapshot")
        client._socket.send("not json {")
        client._socket.send(b"\x00\x01binary")
        client._socket.send("[" * 100_000 + "]" * 100_000)  # deeper than the JSON decoder follows
        errors = wait_until(lambda: len(client.pushed("error")) >= 3 and client.pushed("error"), message="errors")
        assert [e["status"] for e in errors] == [400, 400, 400]
        client.send({"action": "snapshot"})
        wait_until(lambda: len(client.pushed("snapshot")) == 2, message="still open")
    finally:
        client.close()


def test_a_bad_reason_over_the_websocket_is_a_400_and_the_socket_stays_open(daphne_server):
    client = DashboardClient(daphne_server.port, cookie=session_cookie(_user("operator", "halt_trading")))
    try:
        wait_until(lambda: client.pushed("snapshot"), message="the snapshot")
        for reason in ("x" * 501, "nul \x00", 42):
            client.send({"action": "halt", "reason": reason})
        errors = wait_until(lambda: len(client.pushed("error")) >= 3 and client.pushed("error"), message="3 errors")
        assert [e["status"] for e in errors] == [400, 400, 400] and "reason" in errors[0]["detail"]
        assert TradingState.load().state == "ACTIVE"
        client.send({"action": "halt", "reason": "fine"})
        assert wait_until(lambda: client.pushed("ack"), message="the ack")[0]["trading_state"]["state"] == "HALTED"
    finally:
        client.close()
