"""Rendering hostile model output and stored records: never a huge page, never a frozen worker.

Deep JSON is shown as received, not re-indented with the square of its depth.
"""

import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from chat.models import ApiCall, Share
from tests.helpers import send

DEPTH = 9_000
DEEP_JSON = "[" * DEPTH + "]" * DEPTH  # 18 KB; indented, about 162 MB


def share_it(client: Client, conversation) -> Share:
    response = client.post(
        reverse("share_create", args=[conversation.public_id]),
        {"expires_in": "", "show_inspector": "on"},
    )
    assert response.status_code == 302
    return Share.objects.filter(conversation=conversation).latest("created")


@pytest.fixture
def deep_call(alice_client, conversation) -> ApiCall:
    """A reply whose call holds 9,000-deep JSON as its request and response (as an
    imported call, or a hostile upstream's reply, would)."""
    send(alice_client, conversation, "Hello")
    call = ApiCall.objects.get()
    ApiCall.objects.filter(pk=call.pk).update(request_body=DEEP_JSON, response_body=DEEP_JSON)
    return call


def get_timed(client: Client, url: str):
    start = time.perf_counter()
    response = client.get(url)
    return response, time.perf_counter() - start


def assert_shown_as_received(response, seconds: float) -> None:
    page = response.content.decode()
    assert response.status_code == 200
    assert seconds < 2, f"{seconds:.1f} s"
    assert len(response.content) < 300_000, f"{len(response.content):,} bytes"
    assert DEEP_JSON in page  # the exact text, unformatted
    assert "Shown as received: too deep to format" in page


@pytest.mark.django_db
def test_the_share_page_of_a_call_holding_deep_json_is_small_quick_and_exact(
    alice_client, conversation, deep_call
):
    share = share_it(alice_client, conversation)

    response, seconds = get_timed(Client(), share.get_absolute_url())

    assert_shown_as_received(response, seconds)


@pytest.mark.django_db
def test_the_conversation_page_of_a_call_holding_deep_json_is_small_quick_and_exact(
    alice_client, conversation, deep_call
):
    response, seconds = get_timed(alice_client, conversation.get_absolute_url())

    assert_shown_as_received(response, seconds)


@pytest.mark.django_db
def test_the_call_page_of_a_call_holding_deep_json_is_small_quick_and_exact(
    alice_client, deep_call
):
    response, seconds = get_timed(alice_client, reverse("call_detail", args=[deep_call.public_id]))

    assert_shown_as_received(response, seconds)
    download = alice_client.get(reverse("call_download", args=[deep_call.public_id, "response"]))
    assert download.content.decode() == DEEP_JSON  # and downloadable as it is


@pytest.mark.django_db
def test_a_streamed_call_whose_assembled_response_is_deep_shows_it_as_received(
    alice_client, conversation
):
    """Stored as JSON, so as deep as the database takes (SQLite: under 1,000 levels)."""
    send(alice_client, conversation, "Hello")
    deep = "[" * 900 + "]" * 900  # indented, 1.6 MB
    ApiCall.objects.update(assembled_response=json.loads(deep), stream_events=[])

    response = alice_client.get(conversation.get_absolute_url())

    page = response.content.decode()
    assert response.status_code == 200
    assert len(response.content) < 300_000, f"{len(response.content):,} bytes"
    assert deep in page
    assert "Shown as received: too deep to format" in page


@pytest.mark.django_db
def test_json_a_little_too_large_to_format_is_shown_as_received(
    alice_client, conversation, settings
):
    settings.MAX_FORMAT_CHARS = 1_000
    send(alice_client, conversation, "Hello")
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 2_000}]})
    ApiCall.objects.update(request_body=body)

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert "Shown as received: too large to format" in page
    assert body.replace('"', "&quot;") in page
