"""Two app processes on one PostgreSQL database serve the same users, chats and share links.

Runs scripts/two_instances.py (two production servers, real HTTP) on a database of its own
next to the test database. Only on PostgreSQL: that is the deployment it describes.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def instances_database_url() -> str:
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("runs when the suite runs on PostgreSQL (DATABASE_URL=postgres://...)")
    import psycopg

    name = f"{database['NAME']}_instances"
    connection = psycopg.connect(
        dbname=database["NAME"],
        user=database["USER"],
        password=database["PASSWORD"],
        host=database["HOST"] or "localhost",
        port=database["PORT"] or 5432,
        autocommit=True,
    )
    with connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if exists.fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')
    host = database["HOST"] or "localhost"
    return (
        f"postgres://{database['USER']}:{database['PASSWORD']}@{host}:"
        f"{database['PORT'] or 5432}/{name}"
    )


def test_two_instances_share_users_conversations_and_links(instances_database_url):
    result = subprocess.run(
        [sys.executable, "scripts/two_instances.py", "--database-url", instances_database_url],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 of 11 checks passed" in result.stdout
