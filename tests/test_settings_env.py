"""Start-up refuses bad configuration with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage_check(**env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in env or env[k] is not None}
    full_env.update({k: v for k, v in env.items() if v is not None})
    full_env["DJANGO_SETTINGS_MODULE"] = "quickbg.settings"
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("QUICKBG_MAX_UPLOAD_MB", "ten", "QUICKBG_MAX_UPLOAD_MB must be a number"),
        ("QUICKBG_JOB_TIMEOUT", "5m", "QUICKBG_JOB_TIMEOUT must be an integer"),
        ("PORT", "0", "PORT must be >= 1"),
        ("DEBUG", "maybe", "DEBUG must be a boolean"),
        ("DATABASE_URL", "nosuchdb://x", "DATABASE_URL is not a valid database URL"),
    ],
)
def test_bad_value_stops_startup_naming_the_variable(var, value, message):
    proc = manage_check(**{var: value})
    assert proc.returncode != 0
    assert message in proc.stderr


def test_secret_key_is_required_when_debug_is_off():
    proc = manage_check(DEBUG="false", SECRET_KEY="", ALLOWED_HOSTS="example.com")
    assert proc.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in proc.stderr


def test_good_production_environment_starts():
    proc = manage_check(DEBUG="false", SECRET_KEY="x" * 60, ALLOWED_HOSTS="example.com")
    assert proc.returncode == 0, proc.stderr
