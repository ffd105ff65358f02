"""Serving under ASGI: one thread hop per request, static files served whole."""

import logging
import warnings

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.test import AsyncClient, override_settings

from playground.handlers import OneHopASGIHandler
from tests.helpers import on_event_loop


@override_settings(DEBUG=True)  # Django then logs each switch between sync and async
def test_the_middleware_chain_and_the_view_run_in_one_thread_hop(caplog):
    # Django's own handler runs the chain on the event loop, switching to a
    # thread and back for each middleware's request and response halves.
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        handler = OneHopASGIHandler()
    assert not iscoroutinefunction(handler._middleware_chain)
    assert not [r.message for r in caplog.records if "adapted" in r.message]


def test_production_serves_through_the_one_hop_handler():
    # The tests above build the handler themselves; `make serve` runs playground.asgi.
    from playground.asgi import application

    assert isinstance(application, OneHopASGIHandler)


@override_settings(WHITENOISE_USE_FINDERS=True)
def test_a_static_file_is_served_whole_under_asgi_without_a_warning():
    with warnings.catch_warnings():
        # Django warns when it must read a sync file iterator under ASGI.
        warnings.filterwarnings("error", message="StreamingHttpResponse must consume")
        response = on_event_loop(lambda: AsyncClient().get("/static/css/app.css"))
    assert response.status_code == 200
    assert not response.streaming
    assert response.content == (settings.BASE_DIR / "static/css/app.css").read_bytes()
    assert response["Content-Type"].startswith("text/css")
