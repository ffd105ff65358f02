"""Production settings: refuse to start without a secret, pass Django's deploy check."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "play.example.com",
    "DATABASE_URL": "sqlite:////tmp/playground-deploy-check.sqlite3",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("UPSTREAM_", "DJANGO_"))
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_passes_the_deploy_check_with_no_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", **{**PRODUCTION, "SECRET_KEY": ""})

    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def test_the_status_command_says_when_replies_come_from_the_demo():
    result = manage("upstream_status", UPSTREAM_API_KEY="", UPSTREAM_BASE_URL="")

    assert "offline demo endpoint at http://127.0.0.1:8001/v1" in result.stdout


def test_the_status_command_never_prints_the_key():
    result = manage("upstream_status", UPSTREAM_API_KEY="sk-very-secret-value")

    assert "https://api.aimlapi.com/v1 (with an API key)" in result.stdout
    assert "sk-very-secret-value" not in result.stdout + result.stderr
