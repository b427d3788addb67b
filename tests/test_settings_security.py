"""Production settings: safe by default where it costs nothing, HTTPS from one switch, no placeholder key."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

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
