"""Work each server process would otherwise do on its first request, done at start."""

from django.conf import settings
from django.urls import get_resolver

from chat import catalogue, client

DEBUG_REFUSED = (
    "DEBUG is on, and this is the production server (`make serve`, playground.asgi): "
    "it refuses to run with DEBUG=true, which shows tracebacks and settings to anyone. "
    "Set DEBUG=false (with SECRET_KEY and ALLOWED_HOSTS, docs/deploy.md), "
    "or use `make run` for development."
)


def refuse_debug() -> None:
    """Stop a production server process that was started with DEBUG on."""
    if settings.DEBUG:
        raise SystemExit(DEBUG_REFUSED)


def warm_up() -> None:
    """Import the views and load what every message needs, before the first user waits.

    Measured on the first message after a start: importing the views through the
    URLconf takes about 160 ms, the upstream client's TLS setup 30-60 ms, and the
    bundled model schemas a few more. Nothing here touches the network or the database.
    """
    get_resolver().url_patterns  # noqa: B018 - the property imports every view
    client.tls_context()
    catalogue.bundled_schemas()
