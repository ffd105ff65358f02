"""Streamed replies: relayed live, saved on a timer, and kept however the stream ends."""

import html
import json
import re
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from chat.models import ApiCall, Conversation, Message
from tests.helpers import form_data

pytestmark = pytest.mark.django_db


def start_stream(client, conversation, content="Stream to me", **overrides):
    url = reverse("message_stream", args=[conversation.public_id])
    return client.post(url, form_data(content, **overrides))


def parse(chunks):
    """Our server-sent events as (event, data) pairs; pings are comments and are skipped."""
    for chunk in chunks:
        text = chunk.decode()
        if text.startswith(":"):
            continue
        event, data = text.strip().split("\n", 1)
        yield event.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def read_all(response):
    return list(parse(response.streaming_content))


def hang_up(response):
    """Close the response mid-stream, as the WSGI server does when the browser goes away.

    Closing fires request_finished, which drops a connection that is inside a
    transaction: tests using this need real transactions, as in production.
    """
    response.close()


def test_it_streams_deltas_then_the_message_as_a_reload_shows_it(
    alice_client, conversation, upstream
):
    response = start_stream(alice_client, conversation, extra_params='{"demo_fault": "pace=0.01"}')
    assert response["Content-Type"] == "text/event-stream"
    assert response["X-Accel-Buffering"] == "no"

    events = read_all(response)

    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("delta") > 3  # relayed as it arrives, not at the end
    reply = Message.objects.get(role="assistant")
    assert "".join(data["content"] for kind, data in events if kind == "delta") == reply.content
    assert reply.status == Message.Status.COMPLETE
    assert "<strong>Demo reply</strong>" in events[-1][1]["html"]
    assert events[-1][1]["status"] == "complete"
    assert json.loads(upstream.chat_requests()[0].body)["stream"] is True


def test_it_records_the_stream_for_the_inspector(alice_client, conversation, upstream):
    read_all(start_stream(alice_client, conversation, extra_params='{"enable_thinking": true}'))

    call = ApiCall.objects.get()
    reply = Message.objects.get(role="assistant")
    assert call.status == ApiCall.Status.SUCCEEDED
    assert call.stream_events[-1]["data"] == "[DONE]"
    assert all(isinstance(event["at_ms"], int) for event in call.stream_events)
    assert call.response_body.startswith("data: {")
    message = call.assembled_response["choices"][0]["message"]
    assert message["content"] == reply.content
    assert message["reasoning_content"] == reply.reasoning != ""
    assert call.first_token_ms is not None and call.latency_ms >= call.first_token_ms
    assert call.completion_tokens and call.prompt_tokens and call.reasoning_tokens
    assert call.usd_spent is not None
    assert call.request_body.encode() == upstream.chat_requests()[0].body
    page = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()
    assert "server-sent events, as received" in page
    assert "Formatted: the chunks assembled into one response (not the bytes received)" in page


def test_the_inspector_lists_every_event_with_its_time(alice_client, conversation, upstream):
    events = read_all(start_stream(alice_client, conversation))

    call = ApiCall.objects.get()
    rows = re.findall(
        r"<tr><td>\+(\d+) ms</td><td><code>(.*?)</code></td></tr>", events[-1][1]["html"]
    )
    assert len(rows) == len(call.stream_events) > 3
    assert [int(at) for at, _ in rows] == [event["at_ms"] for event in call.stream_events]
    # Escaped as received: the JSON's quotes are entities, and the last event is [DONE].
    assert rows[0][1] == html.escape(call.stream_events[0]["data"])
    assert rows[-1][1] == "[DONE]"


def test_a_stream_closed_after_a_finish_reason_without_done_is_complete(alice_client, conversation):
    read_all(start_stream(alice_client, conversation, extra_params='{"demo_fault": "no_done"}'))

    assert Message.objects.get(role="assistant").status == Message.Status.COMPLETE


@pytest.mark.parametrize(
    ("fault", "error_kind", "shown"),
    [
        ("reset_after=3", "broken", "broke mid-stream"),
        ("stall_after=3,stall=5", "timeout", "The stream stalled"),
        ("error_event_after=3", "stream_error", "Upstream model overloaded"),
        ("malformed", "bad_json", "malformed chunk"),
        ("no_end", "broken", "ended without a finish_reason or [DONE]"),
    ],
)
def test_a_broken_stream_keeps_the_partial_text_marked_interrupted(
    alice_client, conversation, settings, fault, error_kind, shown
):
    settings.UPSTREAM_READ_TIMEOUT = 1.5
    events = read_all(
        start_stream(alice_client, conversation, extra_params=json.dumps({"demo_fault": fault}))
    )

    reply = Message.objects.get(role="assistant")
    call = ApiCall.objects.get()
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.content  # what arrived is kept
    assert reply.content == "".join(data["content"] for kind, data in events if kind == "delta")
    assert (call.status, call.error_kind) == (ApiCall.Status.FAILED, error_kind)
    final = events[-1][1]
    assert final["status"] == "interrupted"
    assert "The reply is incomplete." in final["html"] and shown in final["html"]
    assert ">Retry</button>" in final["html"]


def test_it_retries_before_the_stream_opens(alice_client, conversation, upstream):
    read_all(
        start_stream(
            alice_client, conversation, extra_params='{"demo_fault": "status=503,fail_times=1"}'
        )
    )

    assert Message.objects.get(role="assistant").status == Message.Status.COMPLETE
    assert [call.http_status for call in ApiCall.objects.order_by("attempt")] == [503, 200]


def test_a_stream_that_cannot_open_ends_in_a_visible_error(alice_client, conversation, upstream):
    events = read_all(
        start_stream(alice_client, conversation, extra_params='{"demo_fault": "status=400"}')
    )

    assert Message.objects.get(role="assistant").status == Message.Status.FAILED
    assert "Body validation error!" in events[-1][1]["html"]
    assert len(upstream.chat_requests()) == 1


def stop_once(client, conversation, events, after: str) -> tuple[float, list]:
    """Press Stop once `start` and then an `after` event are read; how long the rest of
    the stream took, and its events."""
    start = next(events)[1]
    if after != "start":
        assert next(events)[0] == after
    stop_url = reverse("reply_stop", args=[conversation.public_id, start["reply_id"]])
    assert client.post(stop_url).status_code == 204
    asked = time.monotonic()
    rest = list(events)
    assert rest[-1][1]["status"] == "stopped"
    return time.monotonic() - asked, rest


def test_stop_ends_the_stream_within_a_second_and_keeps_the_text(alice_client, conversation):
    response = start_stream(alice_client, conversation, extra_params='{"demo_fault": "pace=0.1"}')
    events = parse(response.streaming_content)

    seconds, rest = stop_once(alice_client, conversation, events, after="delta")

    assert seconds < 1.0
    reply = Message.objects.get(role="assistant")
    call = ApiCall.objects.get()
    assert reply.status == Message.Status.STOPPED
    assert reply.content and call.finish_reason == ""  # stopped before the upstream finished
    assert call.error_kind == "stopped"
    assert "Stopped by the user" in rest[-1][1]["html"]


def test_stop_works_while_the_upstream_has_not_answered(alice_client, conversation):
    response = start_stream(alice_client, conversation, extra_params='{"demo_fault": "delay=5"}')

    events = parse(response.streaming_content)

    assert stop_once(alice_client, conversation, events, after="start")[0] < 1.0
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.STOPPED and reply.content == ""
    assert ApiCall.objects.get().error_kind == "stopped"


def test_stop_works_while_waiting_to_retry(alice_client, conversation, settings):
    settings.UPSTREAM_RETRY_MAX_WAIT = 30
    fault = '{"demo_fault": "status=503,retry_after=30"}'  # "try again in 30 s"
    response = start_stream(alice_client, conversation, extra_params=fault)

    events = parse(response.streaming_content)

    assert stop_once(alice_client, conversation, events, after="start")[0] < 1.0
    assert Message.objects.get(role="assistant").status == Message.Status.STOPPED
    assert ApiCall.objects.get().http_status == 503  # no second attempt


def test_deleting_the_conversation_mid_stream_hangs_up_and_keeps_nothing(
    alice_client, conversation
):
    """Deleted in another tab, say: the stream ends within a second, saying why, and no
    row of it comes back."""
    response = start_stream(alice_client, conversation, extra_params='{"demo_fault": "pace=0.1"}')
    events = parse(response.streaming_content)
    assert [next(events)[0], next(events)[0]] == ["start", "delta"]

    alice_client.post(reverse("conversation_delete", args=[conversation.public_id]))
    deleted = time.monotonic()
    rest = list(events)

    assert time.monotonic() - deleted < 1.0
    kind, data = rest[-1]
    assert kind == "gone" and "was deleted" in data["message"]
    assert not Message.objects.exists() and not ApiCall.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_conversation_deleted_just_before_a_retry_gets_no_new_call(
    alice_client, conversation, upstream
):
    def delete_in_another_tab():
        Conversation.objects.filter(pk=conversation.pk).delete()
        connections.close_all()  # this thread's

    fault = '{"demo_fault": "delay=0.7,status=503,retry_after=0,fail_times=1"}'
    response = start_stream(alice_client, conversation, extra_params=fault)
    events = parse(response.streaming_content)
    assert next(events)[0] == "start"
    # After the wait's first Stop check (0.5 s), before the 503 (0.7 s).
    threading.Timer(0.55, delete_in_another_tab).start()

    assert list(events)[-1][0] == "gone"
    assert len(upstream.chat_requests()) == 1  # the retry never went out
    assert not Message.objects.exists() and not ApiCall.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_closed_browser_leaves_the_partial_text_marked_interrupted(alice_client, conversation):
    response = start_stream(alice_client, conversation, extra_params='{"demo_fault": "pace=0.1"}')
    events = parse(response.streaming_content)
    next(events)
    next(events)

    hang_up(response)

    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.content
    assert ApiCall.objects.get().error_kind == "client_gone"
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "Interrupted" in page and "The browser went away" in page


@pytest.mark.django_db(transaction=True)
def test_the_new_messages_come_before_the_upstream_answers(alice_client, conversation):
    response = start_stream(alice_client, conversation, extra_params='{"demo_fault": "delay=5"}')
    chunks = iter(response.streaming_content)
    began = time.monotonic()

    assert next(chunks).startswith(b"event: start") and time.monotonic() - began < 1.0
    assert next(chunks) == b": ping\n\n"  # waiting for the upstream
    hang_up(response)  # the browser goes away before the upstream answered

    assert Message.objects.get(role="assistant").status == Message.Status.INTERRUPTED
    assert ApiCall.objects.get().error_kind == "client_gone"


@pytest.mark.django_db(transaction=True)
def test_the_partial_text_is_saved_while_streaming(alice_client, conversation):
    response = start_stream(alice_client, conversation, extra_params='{"demo_fault": "pace=0.1"}')
    events = parse(response.streaming_content)
    next(events)
    began = time.monotonic()
    deltas = 0
    while time.monotonic() - began < 1.6:
        deltas += next(events)[0] == "delta"

    saved = Message.objects.get(role="assistant")
    assert saved.status == Message.Status.PENDING
    assert len(saved.content) > 0
    assert deltas > 3  # saved on a timer, not after every token
    hang_up(response)


def test_one_submit_starts_one_stream(alice_client, conversation, upstream):
    data = form_data("only once")
    url = reverse("message_stream", args=[conversation.public_id])

    read_all(alice_client.post(url, data))
    second = alice_client.post(url, data)

    assert second.status_code == 409
    assert len(upstream.chat_requests()) == 1
    assert Message.objects.filter(role="user").count() == 1


def test_invalid_input_is_refused_before_anything_is_saved(alice_client, conversation, upstream):
    response = start_stream(alice_client, conversation, temperature="9")

    assert response.status_code == 400
    assert not Message.objects.exists()
    assert upstream.chat_requests() == []


def test_another_user_cannot_stream_into_or_stop_my_conversation(
    alice_client, bob_client, conversation
):
    response = start_stream(alice_client, conversation, extra_params='{"demo_fault": "pace=0.05"}')
    start = next(parse(response.streaming_content))[1]

    assert start_stream(bob_client, conversation).status_code == 404
    stop_url = reverse("reply_stop", args=[conversation.public_id, start["reply_id"]])
    assert bob_client.post(stop_url).status_code == 404
    read_all(response)
    assert Message.objects.get(role="assistant").status == Message.Status.COMPLETE


def test_streaming_needs_the_csrf_token(alice, conversation):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    assert start_stream(client, conversation).status_code == 403


def test_a_reply_left_pending_by_a_dead_process_is_marked_interrupted(alice_client, conversation):
    user = Message.objects.create(conversation=conversation, role="user", content="hi")
    reply = Message.objects.create(
        conversation=conversation, role="assistant", parent=user, status="pending", content="half"
    )
    conversation.current_leaf = reply
    conversation.save()
    Message.objects.filter(pk=reply.pk).update(updated=timezone.now() - timedelta(hours=1))

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    reply.refresh_from_db()
    assert reply.status == Message.Status.INTERRUPTED
    assert "half" in page and ">Retry</button>" in page


def test_retrying_an_interrupted_reply_keeps_it_as_a_sibling(alice_client, conversation):
    read_all(start_stream(alice_client, conversation, extra_params='{"demo_fault": "no_end"}'))
    broken = Message.objects.get(role="assistant")
    parameters = reverse("parameters_save", args=[conversation.public_id])
    alice_client.post(parameters, form_data("", model="demo/echo"))

    alice_client.post(reverse("reply_retry", args=[conversation.public_id, broken.public_id]))

    broken.refresh_from_db()
    assert broken.status == Message.Status.INTERRUPTED and broken.content
    retry = Message.objects.exclude(pk=broken.pk).get(role="assistant")
    assert retry.parent_id == broken.parent_id
    assert retry.status == Message.Status.COMPLETE
    conversation.refresh_from_db()
    assert conversation.current_leaf == retry


def test_a_pending_reply_can_be_followed_by_its_owner_only(alice_client, bob_client, conversation):
    user = Message.objects.create(conversation=conversation, role="user", content="hi")
    reply = Message.objects.create(
        conversation=conversation, role="assistant", parent=user, status="pending", content="so far"
    )
    url = reverse("message_fragment", args=[conversation.public_id, reply.public_id])

    fragment = alice_client.get(url).content.decode()

    assert 'class="message assistant status-pending"' in fragment
    assert "so far" in fragment and f'data-message-url="{url}"' in fragment
    assert bob_client.get(url).status_code == 404
