"""Login throttling on the three login paths (django-axes) and password rules for every user, ensure_admin's too."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db
RIGHT = "a-right-password-9"


@pytest.fixture
def operator():
    return User.objects.create_superuser("operator", password=RIGHT)


@pytest.mark.parametrize("path", ["/admin/login/", "/accounts/login/"])
def test_five_wrong_passwords_lock_the_form_logins_out(client, operator, path):
    for _ in range(4):
        response = client.post(path, {"username": "operator", "password": "wrong-guess"})
        assert response.status_code == 200  # the form again, with its error
    assert client.post(path, {"username": "operator", "password": "wrong-guess"}).status_code == 429  # the 5th
    locked = client.post(path, {"username": "operator", "password": RIGHT})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_five_wrong_passwords_lock_the_token_endpoint_out(client, operator):
    for _ in range(4):
        response = client.post("/api/token/", {"username": "operator", "password": "wrong-guess"})
        assert response.status_code == 400
    assert client.post("/api/token/", {"username": "operator", "password": "wrong-guess"}).status_code == 429
    locked = client.post("/api/token/", {"username": "operator", "password": RIGHT})
    assert locked.status_code == 429 and "token" not in locked.json()


def test_another_user_is_not_locked_out_by_someone_elses_failures(client, operator):
    User.objects.create_user("viewer", password=RIGHT)
    for _ in range(5):
        client.post("/api/token/", {"username": "operator", "password": "wrong-guess"})
    assert client.post("/api/token/", {"username": "viewer", "password": RIGHT}).status_code == 200


@pytest.mark.parametrize("password", ["a", "password123", "12345678901"])
def test_ensure_admin_refuses_a_weak_password(monkeypatch, password):
    monkeypatch.setenv("CDB_ADMIN_USER", "admin")
    monkeypatch.setenv("CDB_ADMIN_PASSWORD", password)
    with pytest.raises(CommandError) as error:
        call_command("ensure_admin", stdout=io.StringIO())
    assert error.value.returncode == 2 and "CDB_ADMIN_PASSWORD refused" in str(error.value)
    assert not User.objects.exists()


def test_ensure_admin_takes_a_good_password(monkeypatch):
    monkeypatch.setenv("CDB_ADMIN_PASSWORD", "correct-horse-battery-staple")
    call_command("ensure_admin", stdout=io.StringIO())
    assert User.objects.get(is_superuser=True).check_password("correct-horse-battery-staple")


def test_ensure_admin_reads_the_password_from_cdb_admin_password_file(monkeypatch, tmp_path):
    # compose's cdb_admin_password secret: a file; its trailing newline is not part of the password
    secret = tmp_path / "cdb_admin_password"
    secret.write_text("correct-horse-battery-staple\n")
    monkeypatch.delenv("CDB_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("CDB_ADMIN_PASSWORD_FILE", str(secret))
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert User.objects.get(is_superuser=True).check_password("correct-horse-battery-staple")
    assert "password from CDB_ADMIN_PASSWORD" in out.getvalue()
