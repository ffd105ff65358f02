"""Every page that shows a call stays small, however large the call (issue 18).

A hostile upstream can fill a reply up to UPSTREAM_MAX_REPLY_BYTES: an endless stream
of small events, or a gzip bomb of a few huge ones. The pages show the first part of
each body and of the events, with a note saying how much there is and where the rest
is; the download and the export keep every byte.
"""

import json

import pytest
from django.test import Client
from django.urls import reverse

from chat.models import ApiCall
from tests.helpers import send
from tests.test_hostile_rendering import share_it

PAGE_BOUND = 1_000_000  # bytes: a page of a huge call, against the call's 8 MB


def sse(chunk: dict) -> str:
    return f"data: {json.dumps(chunk)}"


def endless_stream_record(size: int) -> dict:
    """The fields of a streamed call as an endless stream leaves them: `size` bytes of
    small content events, the assembled response holding all of their text."""
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "demo/echo",
        "choices": [{"index": 0, "delta": {"content": "and on "}, "finish_reason": None}],
    }
    data = sse(chunk)
    count = size // (len(data) + 2)
    events = [{"at_ms": 50 + index, "data": data} for index in range(count)]
    assembled = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "and on " * count}}],
    }
    return {
        "response_body": "".join(f"{event['data']}\n\n" for event in events),
        "stream_events": events,
        "assembled_response": assembled,
    }


def gzip_bomb_record(size: int) -> dict:
    """A gzip bomb's stream: a few events of 64 KiB of content each."""
    filler = "x" * 65_536
    data = sse({"choices": [{"index": 0, "delta": {"content": filler}}]})
    events = [{"at_ms": index, "data": data} for index in range(size // len(data))]
    content = filler * len(events)
    return {
        "response_body": "".join(f"{event['data']}\n\n" for event in events),
        "stream_events": events,
        "assembled_response": {"choices": [{"message": {"content": content}}]},
    }


@pytest.fixture(params=["endless", "gzip_bomb"])
def huge_call(request, alice_client, conversation) -> ApiCall:
    """Alice's reply whose stored call is about 8 MB, written straight to its row (what
    is measured here is showing stored data, not receiving it)."""
    send(alice_client, conversation, "Hello")
    call = ApiCall.objects.get()
    make = endless_stream_record if request.param == "endless" else gzip_bomb_record
    ApiCall.objects.filter(pk=call.pk).update(**make(8 * 1024 * 1024))
    call.refresh_from_db()
    return call


def download_url(call: ApiCall) -> str:
    return reverse("call_download", args=[call.public_id, "response"])


def assert_bounded(response, *, owner_link: str | None) -> str:
    assert response.status_code == 200
    assert len(response.content) < PAGE_BOUND, f"{len(response.content):,} bytes"
    page = response.content.decode()
    assert "Showing the first 65,536 of " in page
    if owner_link:
        assert f'<a href="{owner_link}" download>Download the whole body</a>' in page
    else:
        assert "The whole of it is in the owner&#x27;s record." in page
    return page


@pytest.mark.django_db
def test_it_shows_the_call_page_of_an_8_mb_reply_in_part_with_the_download_link(
    alice_client, huge_call
):
    response = alice_client.get(reverse("call_detail", args=[huge_call.public_id]))

    page = assert_bounded(response, owner_link=download_url(huge_call))
    events = len(huge_call.stream_events)
    assert f"of {events:,} events" in page


@pytest.mark.django_db
def test_it_loads_the_inspector_of_an_8_mb_reply_when_opened_not_in_the_page(
    alice_client, conversation, huge_call
):
    response = alice_client.get(conversation.get_absolute_url())

    assert response.status_code == 200
    assert len(response.content) < PAGE_BOUND + len(huge_call.message.content) * 1.1
    page = response.content.decode()
    record_url = reverse("call_record", args=[huge_call.public_id])
    assert f'data-record-url="{record_url}"' in page
    assert '<table class="stream-events">' not in page
    # Opened, the record is the bounded one.
    assert_bounded(alice_client.get(record_url), owner_link=download_url(huge_call))


@pytest.mark.django_db
def test_it_still_shows_a_small_replys_inspector_in_the_page(alice_client, conversation):
    send(alice_client, conversation, "Hello")

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert '<table class="stream-events">' in page or "<summary>Body, exactly as received" in page
    assert "data-record-url" not in page
    assert "Showing the first" not in page


@pytest.mark.django_db
def test_it_shows_the_share_page_of_an_8_mb_reply_in_part(alice_client, conversation, huge_call):
    share = share_it(alice_client, conversation)

    response = Client().get(share.get_absolute_url())

    assert len(response.content) < PAGE_BOUND + len(huge_call.message.content) * 1.1
    page = assert_bounded(response, owner_link=None)
    assert "/response.json" not in page  # no owner's download on a public page


@pytest.mark.django_db
def test_it_downloads_the_exact_bytes_of_an_8_mb_reply(alice_client, huge_call):
    response = alice_client.get(download_url(huge_call))

    assert response.status_code == 200
    assert response.content == huge_call.response_body.encode()


@pytest.mark.django_db
def test_it_exports_every_byte_of_an_8_mb_reply(alice_client, conversation, huge_call):
    for url in (
        reverse("conversation_export_json", args=[conversation.public_id]),
        reverse("conversations_export"),
    ):
        response = alice_client.get(url)

        document = json.loads(b"".join(response.streaming_content))
        (call,) = document["conversations"][0]["messages"][-1]["calls"]
        assert call["response_body"] == huge_call.response_body
        assert call["stream_events"] == huge_call.stream_events


@pytest.mark.django_db
def test_it_shows_the_events_before_one_too_large_to_read_for_the_page(alice_client, conversation):
    send(alice_client, conversation, "Hello")
    small = {"at_ms": 1, "data": sse({"choices": [{"delta": {"content": "Hi"}}]})}
    huge = {"at_ms": 2, "data": sse({"choices": [{"delta": {"content": "y" * 2_000_000}}]})}
    events = [small, huge, {"at_ms": 3, "data": "[DONE]"}]
    ApiCall.objects.update(
        stream_events=events,
        response_body="".join(f"{event['data']}\n\n" for event in events),
        assembled_response={"choices": [{"message": {"content": "Hi" + "y" * 2_000_000}}]},
    )
    call = ApiCall.objects.get()

    response = alice_client.get(reverse("call_detail", args=[call.public_id]))

    page = assert_bounded(response, owner_link=download_url(call))
    assert "3 server-sent events, as received" in page
    assert "Showing the first 1 of 3 events." in page
    assert "+1 ms" in page


@pytest.mark.django_db
def test_it_still_counts_a_shares_messages_on_the_share_list(alice_client, conversation, huge_call):
    share_it(alice_client, conversation)

    page = alice_client.get(reverse("share_list")).content.decode()

    assert "· 2 messages" in page
