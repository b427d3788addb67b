"""A halt while halted, a release while active: every path (commands, API, websocket, admin) says trading was in
that state already, changes nothing but what it says (a halt's added reason), and leaves one audit row each."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from rest_framework.test import APIClient

from risk.models import AuditLog, RiskEvent, TradingState
from tests.support import processes
from tests.support.processes import ROOT


def _run(db: Path, *args: str):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{db}"}
    return processes.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def _manage(db: Path, *args: str) -> str:
    done = _run(db, *args)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout.strip()


def test_the_commands_say_already_and_audit_each_attempt(tmp_path):
    import sqlite3

    db = tmp_path / "db.sqlite3"
    _manage(db, "migrate", "--noinput")
    said = [
        _manage(db, "release", "--reason", "nothing halted", "--actor", "ann"),
        _manage(db, "halt", "--reason", "maintenance", "--actor", "ann"),
        _manage(db, "halt", "--reason", "still maintenance", "--actor", "bob"),
        _manage(db, "release", "--reason", "done", "--actor", "ann"),
        _manage(db, "release", "--reason", "done twice", "--actor", "bob"),
    ]
    assert said[0].startswith("Trading is ACTIVE already (since ") and said[0].endswith("nothing to release"), said
    assert said[1] == "Trading HALTED: maintenance (by ann)"
    assert said[2].startswith("Trading is HALTED already (since "), said
    for already in (said[0], said[2]):  # when the state began: ISO 8601 UTC, labelled with its clock
        assert re.search(r"\(since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, market time[,)]", already), already
    assert said[2].endswith("your reason is added to the halt's: maintenance; then bob: still maintenance")
    assert said[3] == "Trading ACTIVE: done (by ann)"
    assert said[4].startswith("Trading is ACTIVE already") and "by ann" in said[4], said
    with sqlite3.connect(db) as connection:
        audit = connection.execute("SELECT actor, action, reason FROM risk_auditlog ORDER BY id").fetchall()
        changes = connection.execute("SELECT COUNT(*) FROM risk_riskevent WHERE decision = 'STATE_CHANGE'").fetchone()
    assert audit == [
        ("ann", "state:active_already", "nothing halted"),
        ("ann", "state:halted", "maintenance"),
        ("bob", "state:halted_again", "still maintenance"),
        ("ann", "state:active", "done"),
        ("bob", "state:active_already", "done twice"),
    ]
    assert changes == (2,)  # two transitions; the repeats changed no state


@pytest.fixture
def operator() -> APIClient:
    user = User.objects.create_user("operator", password="pw-operator-1")
    user.user_permissions.add(Permission.objects.get(codename="halt_trading"))
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_the_api_says_changed_false_and_why(operator):
    response = operator.post("/api/risk/release/", {"reason": "just in case"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["changed"]) == ("ACTIVE", False)
    assert body["message"].startswith("Trading is ACTIVE already") and body["message"].endswith("nothing to release")
    assert AuditLog.objects.get(action="state:active_already").actor == "operator"
    assert not RiskEvent.objects.exists()

    first = operator.post("/api/risk/halt/", {"reason": "look"}, format="json").json()
    assert (first["state"], first["changed"]) == ("HALTED", True)
    assert first["message"] == "Trading HALTED: look (by operator)"
    again = operator.post("/api/risk/halt/", {"reason": "look again"}, format="json").json()
    assert (again["state"], again["changed"]) == ("HALTED", False)
    assert again["reason"] == "look; then operator: look again" and "HALTED already" in again["message"]


@pytest.mark.django_db
def test_the_admin_warns_that_trading_was_active_already(admin_client):
    page = admin_client.post(reverse("admin:risk_tradingstate_release"), {"reason": "twice"}, follow=True)
    text = page.content.decode()
    assert 'class="warning"' in text and "Trading is ACTIVE already" in text
    assert re.search(r"Trading is ACTIVE already \(since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, market time, by ", text)
    assert TradingState.load().state == "ACTIVE"
    assert AuditLog.objects.filter(action="state:active_already", actor="admin").count() == 1


@pytest.mark.django_db
def test_a_full_halt_reason_keeps_the_newest_and_says_so(operator):
    """The halt's reasons reach 500 characters: the oldest part goes, the newest stays visible, the message says so."""
    operator.post("/api/risk/halt/", {"reason": "x" * 480}, format="json")
    for n in range(3):
        body = operator.post("/api/risk/halt/", {"reason": f"newest {n}"}, format="json").json()
        assert body["reason"].endswith(f"then operator: newest {n}"), body["reason"]
        assert len(body["reason"]) <= 500
    assert body["reason"].startswith("…")
    assert "oldest part shortened to fit" in body["message"] and body["message"].endswith("newest 2")
    assert TradingState.objects.get().reason == body["reason"]


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["ring\x07", "\x1b[31mred\x1b[0m"])
def test_a_reason_with_control_characters_is_refused(operator, reason):
    response = operator.post("/api/risk/halt/", {"reason": reason}, format="json")
    assert response.status_code == 400
    assert "control characters" in str(response.json())
    assert not TradingState.objects.filter(state="HALTED").exists()


@pytest.mark.django_db
def test_line_breaks_and_tabs_in_a_reason_fold_to_spaces(operator):
    body = operator.post("/api/risk/halt/", {"reason": "two\nlines\tand tab"}, format="json").json()
    assert body["reason"] == "two lines and tab"


def test_the_halt_command_refuses_an_escape_in_one_line(tmp_path):
    db = tmp_path / "db.sqlite3"
    _manage(db, "migrate", "--noinput")
    done = _run(db, "halt", "--reason", "\x1b[2Jgone")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "control characters (found U+001B)" in done.stderr, done.stderr
