"""Work each server process would otherwise do on its first request, done at start."""

from django.urls import get_resolver

from chat import catalogue, client


def warm_up() -> None:
    """Import the views and load what every message needs, before the first user waits.

    Measured on the first message after a start: importing the views through the
    URLconf takes about 160 ms, the upstream client's TLS setup 30-60 ms, and the
    bundled model schemas a few more. Nothing here touches the network or the database.
    """
    get_resolver().url_patterns  # noqa: B018 - the property imports every view
    client.tls_context()
    catalogue.bundled_schemas()
