"""Production settings: safe by default where it costs nothing, HTTPS from one switch, no placeholder key."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client

from tests.support.processes import ROOT


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "HTTPS") and "PYTEST" not in k}
    return subprocess.run(
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
