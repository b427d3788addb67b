"""Production settings: safe by default where it costs nothing, HTTPS from one switch, no placeholder key."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client

from tests.support import processes
from tests.support.processes import ROOT


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "HTTPS") and "PYTEST" not in k}
    return processes.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("key", ["change-me", "short-but-not-a-placeholder", "django-insecure-" + "x" * 50, "a" * 60])
def test_a_placeholder_or_weak_secret_key_is_refused_with_debug_off(key):
    result = _manage("check", SECRET_KEY=key)
    assert result.returncode != 0 and "SECRET_KEY is a placeholder or too short" in result.stderr


@pytest.mark.parametrize("token", ["change-me", "short-token"])
def test_a_placeholder_or_short_metrics_token_is_refused(token):
    result = _manage("check", SECRET_KEY=secrets.token_urlsafe(50), METRICS_TOKEN=token)
    assert result.returncode != 0 and "METRICS_TOKEN is a placeholder or too short" in result.stderr


def test_the_documented_production_variables_pass_check_deploy():
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        SECRET_KEY=secrets.token_urlsafe(50), HTTPS="true", ALLOWED_HOSTS="trading.example.com",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_https_check_deploy_names_what_is_missing():
    result = _manage("check", "--deploy", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="trading.example.com")
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stdout + result.stderr


# --- Content-Security-Policy (django-csp) -------------------------------------------------------------------

# An inline script (a data block, type="application/json", is not run), style element, style or on… attribute.
LOGO_STYLE = settings.LIGHTWEIGHT_CHARTS_LOGO_STYLE
INLINE = re.compile(r'<script(?![^>]*\b(src=|type="application/json"))[^>]*>|<style\b|\sstyle=|\son[a-z]+=', re.I)


@pytest.mark.django_db
def test_every_page_has_a_content_security_policy_without_inline_code():
    client = Client()
    client.force_login(User.objects.create_superuser("csp", password="csp-password-1"))
    pages = ["/", "/backtests/", "/admin/", "/admin/risk/tradingstate/", "/admin/notify/notification/", "/api/docs/"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["style-src"] == f"'self' {LOGO_STYLE}", url
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'", url
        html = response.content.decode()
        assert not INLINE.search(html), (url, INLINE.search(html))
    assert "Content-Security-Policy" in Client().get("/accounts/login/")


def test_the_one_inline_style_allowed_is_the_installed_chart_librarys():
    """lightweight-charts adds a <style> for its attribution logo; an upgrade that changes it must change the hash."""
    bundle = finders.find("vendor/lightweight-charts/lightweight-charts.standalone.production.js")
    styles = re.findall(r'createElement\("style"\),this\.\w+\.innerText="([^"]*)"', Path(bundle).read_text())
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert LOGO_STYLE == f"'sha256-{digest}'"


_SHOW_SETTINGS = """
import json, logging, django
django.setup()
from django.conf import settings as s
logging.getLogger("cdb.test").warning("token %s in %s", s.METRICS_TOKEN, s.REDIS_URL)
print(json.dumps({"key": s.SECRET_KEY, "db": s.DATABASES["default"]["PASSWORD"], "redis": s.REDIS_URL,
                  "broker": s.CELERY_BROKER_URL, "token": s.METRICS_TOKEN, "mexc": s.MEXC_API_KEY}))
"""


def _settings_in_a_process(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if "PYTEST" not in k and not k.endswith("_FILE")}
    for name in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "METRICS_TOKEN", "MEXC_API_KEY"):
        clean.pop(name, None)
    clean["DJANGO_SETTINGS_MODULE"] = "cdb_project.settings"
    return processes.run(
        [sys.executable, "-c", _SHOW_SETTINGS],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_secrets_are_read_from_name_file_variables_and_added_to_the_urls(tmp_path):
    # compose hands each container its secrets as files (/run/secrets/…) and sets NAME_FILE; the URLs carry none
    values = {
        "secret_key": secrets.token_urlsafe(50),
        "db": "Db-pass:w/rd@1",
        "redis": "RedisPass-" + secrets.token_hex(8),
        "token": "MetricsToken-" + secrets.token_hex(8),
        "mexc": "mx0vglExampleKey",
    }
    files = {}
    for name, value in values.items():
        files[name] = tmp_path / name
        files[name].write_text(value + "\n")  # a secret file's trailing newline is not part of the value
    result = _settings_in_a_process(
        DATABASE_URL="postgres://cdb@db.example:5432/cdb",
        REDIS_URL="redis://cache.example:6379/0",
        SECRET_KEY="change-me",  # NAME_FILE wins over NAME
        SECRET_KEY_FILE=str(files["secret_key"]),
        DATABASE_PASSWORD_FILE=str(files["db"]),
        REDIS_PASSWORD_FILE=str(files["redis"]),
        METRICS_TOKEN_FILE=str(files["token"]),
        MEXC_API_KEY_FILE=str(files["mexc"]),
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["key"] == values["secret_key"]
    assert shown["db"] == values["db"]
    assert shown["redis"] == shown["broker"] == f"redis://:{values['redis']}@cache.example:6379/0"
    assert shown["token"] == values["token"] and shown["mexc"] == values["mexc"]
    # read from files, never in the environment: still masked in the log line
    assert values["token"] not in result.stderr and values["redis"] not in result.stderr
    assert "token *** in redis://:***@cache.example:6379/0" in result.stderr


def test_a_password_in_the_url_is_kept_and_special_characters_are_quoted(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("p@ss/w:rd")
    result = _settings_in_a_process(
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL="postgres://cdb:inurl@db.example:5432/cdb",
        DATABASE_PASSWORD_FILE=str(secret),
        REDIS_URL="redis://localhost:6379/4",
        REDIS_PASSWORD_FILE=str(secret),
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["db"] == "inurl"  # DATABASE_URL exactly as before when it carries a password
    assert shown["redis"] == "redis://:p%40ss%2Fw%3Ard@localhost:6379/4"
    assert urlsplit(shown["redis"]).password and unquote(urlsplit(shown["redis"]).password) == "p@ss/w:rd"


def test_a_name_file_that_does_not_exist_stops_the_start(tmp_path):
    result = _settings_in_a_process(SECRET_KEY_FILE=str(tmp_path / "missing"))
    assert result.returncode != 0 and "missing" in result.stderr
