"""Production settings: the default, refuse to start without a secret or with DEBUG on the
production server, pass Django's deploy check."""

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
        if not key.startswith(("UPSTREAM_", "DJANGO_")) and key != "DEBUG"
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, *args] if args[0] == "-c" else [sys.executable, "manage.py", *args],
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


def test_debug_is_off_unless_it_is_set():
    unset = {key: value for key, value in PRODUCTION.items() if key != "DEBUG"}
    probe = "from django.conf import settings; print(settings.DEBUG)"

    result = manage("shell", "-c", probe, **unset)

    assert result.stdout.split()[-1] == "False", result.stderr


def test_without_settings_the_app_refuses_to_start_rather_than_run_in_debug():
    result = manage("check")  # no DEBUG, no SECRET_KEY: production, so a secret is needed

    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr
    assert "DEBUG=true for development" in result.stderr


def test_production_signs_up_by_invitation_and_development_openly():
    probe = "from django.conf import settings; print(settings.SIGNUP_MODE)"

    production = manage("shell", "-c", probe, **PRODUCTION)
    development = manage("shell", "-c", probe, DEBUG="true")
    opened = manage("shell", "-c", probe, **PRODUCTION, SIGNUP_MODE="open")
    wrong = manage("check", **PRODUCTION, SIGNUP_MODE="sometimes")

    assert production.stdout.split()[-1] == "invite", production.stderr
    assert development.stdout.split()[-1] == "open"
    assert opened.stdout.split()[-1] == "open"
    assert "SIGNUP_MODE must be one of open, invite, closed." in wrong.stderr


def test_the_production_server_refuses_to_run_with_debug_on():
    result = manage("-c", "import playground.asgi", **{**PRODUCTION, "DEBUG": "true"})

    assert result.returncode == 1
    assert "refuses to run with DEBUG=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_production_server_starts_with_debug_off():
    result = manage("-c", "import playground.asgi", **PRODUCTION)

    assert result.returncode == 0, result.stderr


def test_the_serve_target_checks_debug_before_it_migrates():
    recipe = (ROOT / "Makefile").read_text().split("\nserve:")[1].split("\n\n")[0]

    assert recipe.index("import playground.asgi") < recipe.index("migrate")


def test_the_status_command_says_when_replies_come_from_the_demo():
    result = manage("upstream_status", DEBUG="true", UPSTREAM_API_KEY="", UPSTREAM_BASE_URL="")

    assert "offline demo endpoint at http://127.0.0.1:8001/v1" in result.stdout


def test_the_status_command_never_prints_the_key():
    result = manage("upstream_status", DEBUG="true", UPSTREAM_API_KEY="sk-very-secret-value")

    assert "https://api.aimlapi.com/v1 (with an API key)" in result.stdout
    assert "sk-very-secret-value" not in result.stdout + result.stderr


def test_the_migrations_check_runs_without_any_settings():
    """makemigrations is development's: it needs no SECRET_KEY (`manage.py check` still does)."""
    result = manage("makemigrations", "--check", "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout
