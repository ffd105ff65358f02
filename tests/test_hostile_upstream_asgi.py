"""The hostile upstream's streams under the ASGI server: the event-loop reader (httpx) has
the same bounds as the threaded one, and every reply ends."""

import json

import pytest
from django.test import Client

from chat.models import Message
from tests.test_streaming_asgi import (  # noqa: F401 - an autouse fixture, used by name
    close_database_thread_connection,
    run,
    stream,
)

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024


@pytest.fixture
def session_cookie(alice):
    client = Client()
    client.force_login(alice)
    return client.cookies["sessionid"].value


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.UPSTREAM_MAX_REPLY_BYTES = MB
    settings.UPSTREAM_MAX_STREAM_SECONDS = 60


@pytest.mark.parametrize(
    ("spec", "status", "message"),
    [
        ("endless", "interrupted", "The reply passed the 1 MB limit; the text received so far"),
        (f"gzip_bomb={64 * MB}", "interrupted", "The reply passed the 1 MB limit"),
        (f"huge_line={3 * MB}", "interrupted", "The reply passed the 1 MB limit"),
        ("deep_chunk=100000", "interrupted", "nested deeper than 64 levels"),
        ("nan_cost", "complete", "a cost of 'NaN', which is not an amount"),
        ("huge_tokens", "complete", "prompt_tokens '100000000000000000000'"),
        ("nul", "complete", ""),
        ("surrogate", "complete", ""),
    ],
)
def test_a_hostile_stream_ends_with_its_problem_named(
    conversation, session_cookie, spec, status, message
):
    browser = run(
        stream(conversation, session_cookie, extra_params=json.dumps({"demo_fault": spec}))
    )

    assert browser.events[-1][0] == "done"
    reply = Message.objects.get(role="assistant")
    assert reply.status == status
    call = reply.calls.get()
    assert message in call.error_message
    assert len(reply.content) <= MB
    assert "\x00" not in reply.content
    assert sum(len(event["data"]) for event in call.stream_events) <= MB
