"""A server process does its one-time work when it starts, not on a user's first message."""

import os
import subprocess
import sys

import pytest

from chat import client


@pytest.mark.parametrize("entry_point", ["playground.asgi", "playground.wsgi"])
def test_a_server_process_loads_the_views_and_tls_setup_when_it_starts(entry_point):
    # A fresh interpreter, as a server worker starts: the tests' own imports would hide it.
    probe = (
        f"import sys, {entry_point}; from chat import client; "
        "print('chat.views' in sys.modules, client.tls_context.cache_info().currsize)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        # Production settings: the ASGI entry point refuses DEBUG (test_settings.py).
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "playground.settings",
            "DEBUG": "false",
            "SECRET_KEY": "startup-probe-" + "x" * 50,
            "ALLOWED_HOSTS": "play.example.com",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.split() == ["True", "1"]


def test_the_tls_setup_is_built_once_and_shared():
    assert client.tls_context() is client.tls_context()
    assert client.tls_context().verify_mode.name == "CERT_REQUIRED"
