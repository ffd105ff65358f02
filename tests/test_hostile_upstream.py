"""A hostile upstream: every reply value is bounded and validated where it enters, and a
reply always ends, with a message that names the problem and the good text kept.

Driven through the app's views, against the demo upstream's chat faults over real HTTP
(and its scripted answers for bodies a test writes byte for byte).
"""

import html
import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from chat.models import ApiCall, Message, Share
from tests.helpers import form_data, send

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
# A stream that does not end within this is taken as one that never would.
GIVE_UP_SECONDS = 30


@pytest.fixture(autouse=True)
def small_limits(settings):
    """A 1 MB reply limit keeps the size cases quick; the defaults are larger."""
    settings.UPSTREAM_MAX_REPLY_BYTES = MB
    settings.UPSTREAM_MAX_STREAM_SECONDS = 60


def fault(spec: str) -> str:
    return json.dumps({"demo_fault": spec})


def ask(client: Client, conversation, spec: str) -> Message:
    """A non-streamed reply under the fault `spec`; the reply as stored."""
    response = send(client, conversation, "Hostile?", extra_params=fault(spec))
    assert response.status_code == 302, response.status_code
    return Message.objects.filter(role="assistant").latest("created")


def ask_streamed(client: Client, conversation, spec: str | None = None) -> tuple[Message, list]:
    """A streamed reply under the fault `spec`, read to its end; the reply and the events.

    Fails, rather than hang, when the relay goes on pinging past GIVE_UP_SECONDS.
    """
    extra = fault(spec) if spec is not None else ""
    url = reverse("message_stream", args=[conversation.public_id])
    response = client.post(url, form_data("Hostile?", extra_params=extra))
    assert response.status_code == 200
    events, given_up = [], time.monotonic() + GIVE_UP_SECONDS
    for chunk in response.streaming_content:
        text = chunk.decode()
        if not text.startswith(":"):
            kind, data = text.strip().split("\n", 1)
            events.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
        assert time.monotonic() < given_up, "the reply never ended"
    return Message.objects.filter(role="assistant").latest("created"), events


def last_call(reply: Message) -> ApiCall:
    return reply.calls.order_by("-attempt").first()


def assert_pages_answer(client: Client, conversation, reply: Message) -> str:
    """The conversation, the call inspector and the share page answer 200; the inspector's HTML."""
    assert client.get(conversation.get_absolute_url()).status_code == 200
    inspector = client.get(reverse("call_detail", args=[last_call(reply).public_id]))
    assert inspector.status_code == 200
    data = {"expires_in": "", "show_inspector": "on"}
    assert client.post(reverse("share_create", args=[conversation.public_id]), data).status_code
    share = Share.objects.filter(conversation=conversation).latest("created")
    assert Client().get(share.get_absolute_url()).status_code == 200
    assert client.get(reverse("conversations_export")).status_code == 200
    return inspector.content.decode()


def assert_stored_within(reply: Message, limit: int) -> None:
    call = last_call(reply)
    assert len(reply.content) <= limit
    assert len(call.response_body) <= limit + 64 * 1024  # the event framing on top
    assert sum(len(event["data"]) for event in call.stream_events) <= limit


# --- Finding 3: size, time and decompression ---------------------------------


def test_an_endless_stream_ends_interrupted_at_the_size_limit(alice_client, conversation):
    reply, events = ask_streamed(alice_client, conversation, "endless")

    assert reply.status == Message.Status.INTERRUPTED
    assert last_call(reply).error_message == (
        "The reply passed the 1 MB limit; the text received so far is kept."
    )
    assert reply.content.startswith("**Demo reply**") or "and on" in reply.content
    assert_stored_within(reply, MB)
    assert events[-1][0] == "done"
    assert_pages_answer(alice_client, conversation, reply)


def test_a_stream_past_the_time_limit_ends_interrupted(alice_client, conversation, settings):
    settings.UPSTREAM_MAX_STREAM_SECONDS = 1

    reply, _ = ask_streamed(alice_client, conversation, "endless,pace=0.01")

    assert reply.status == Message.Status.INTERRUPTED
    assert last_call(reply).error_message == (
        "The stream passed the 1 s limit; the text received so far is kept."
    )
    assert "and on" in reply.content


def test_a_huge_stream_line_ends_interrupted_and_keeps_the_text_before_it(
    alice_client, conversation
):
    reply, _ = ask_streamed(alice_client, conversation, f"huge_line={3 * MB}")

    assert reply.status == Message.Status.INTERRUPTED
    assert "passed the 1 MB limit" in last_call(reply).error_message
    assert reply.content == "**Demo "  # the first word came before the huge line
    assert_stored_within(reply, MB)


def test_a_gzip_bomb_stream_is_not_expanded_past_the_limit(alice_client, conversation):
    reply, _ = ask_streamed(alice_client, conversation, f"gzip_bomb={64 * MB}")

    assert reply.status == Message.Status.INTERRUPTED
    assert "passed the 1 MB limit" in last_call(reply).error_message
    assert reply.content.startswith("lorem ipsum")
    assert_stored_within(reply, MB)
    assert_pages_answer(alice_client, conversation, reply)


def test_a_gzip_bomb_reply_fails_naming_the_limit(alice_client, conversation):
    reply = ask(alice_client, conversation, f"gzip_bomb={64 * MB}")

    assert reply.status == Message.Status.FAILED
    call = last_call(reply)
    assert call.error_kind == "too_big"
    assert call.error_message.startswith("The reply passed the 1 MB limit")
    assert len(call.response_body) <= MB
    assert_pages_answer(alice_client, conversation, reply)


def test_a_huge_reply_fails_naming_the_limit(alice_client, conversation):
    reply = ask(alice_client, conversation, f"huge_body={2 * MB}")

    assert reply.status == Message.Status.FAILED
    assert last_call(reply).error_message.startswith("The reply passed the 1 MB limit")
    assert reply.content == ""


def test_a_gzipped_reply_within_the_limit_is_read_whole(alice_client, conversation):
    reply = ask(alice_client, conversation, f"gzip_bomb={MB // 2}")

    assert reply.status == Message.Status.COMPLETE
    assert len(reply.content) == MB // 2


# --- Finding 4: malformed reply values ----------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["reply", "stream"])
def test_a_lone_surrogate_in_a_reply_is_stored_as_a_replacement_character(
    alice_client, conversation, streamed
):
    if streamed:
        reply, _ = ask_streamed(alice_client, conversation, "surrogate")
    else:
        reply = ask(alice_client, conversation, "surrogate")

    assert reply.status == Message.Status.COMPLETE
    assert reply.content.startswith("Before\ufffdafter.")
    call = last_call(reply)
    assert "\\ud800" in call.response_body  # the raw body keeps the escape as received
    if streamed:
        assert call.assembled_response["choices"][0]["message"]["content"] == reply.content
    page = assert_pages_answer(alice_client, conversation, reply)
    assert "Before\ufffdafter." in page


def test_a_huge_cost_header_is_not_recorded_and_says_so(alice_client, conversation):
    reply = ask(alice_client, conversation, "huge_cost,no_cost_body")

    assert reply.status == Message.Status.COMPLETE
    call = last_call(reply)
    assert call.usd_spent is None or call.cost_estimated
    note = "The upstream reported a cost of '1e10', which is not a plausible amount"
    assert note in call.error_message
    assert html.escape(note) in assert_pages_answer(alice_client, conversation, reply)


def test_a_stream_with_a_huge_cost_header_ends_complete(alice_client, conversation):
    reply, _ = ask_streamed(alice_client, conversation, "huge_cost,no_cost")

    assert reply.status == Message.Status.COMPLETE
    call = last_call(reply)
    assert call.usd_spent is None or call.cost_estimated  # a stream's cost is in its body
    assert_pages_answer(alice_client, conversation, reply)


@pytest.mark.parametrize("streamed", [False, True], ids=["reply", "stream"])
def test_a_nan_cost_does_not_leave_the_reply_waiting(alice_client, conversation, streamed):
    if streamed:
        reply, _ = ask_streamed(alice_client, conversation, "nan_cost")
    else:
        reply = ask(alice_client, conversation, "nan_cost")

    assert reply.status == Message.Status.COMPLETE
    assert reply.content.startswith("**Demo reply**")
    call = last_call(reply)
    assert call.status == ApiCall.Status.SUCCEEDED
    # A non-streamed reply's header still has the cost; a stream's is then estimated.
    assert call.usd_spent is None or call.usd_spent.is_finite()
    assert "The upstream reported a cost of 'NaN', which is not an amount" in call.error_message
    assert_pages_answer(alice_client, conversation, reply)


def test_a_negative_cost_is_not_recorded(alice_client, conversation):
    reply, _ = ask_streamed(alice_client, conversation, "negative_cost")

    call = last_call(reply)
    assert reply.status == Message.Status.COMPLETE
    assert call.usd_spent is None or call.cost_estimated
    assert "a cost of '-5', which is not a plausible amount" in call.error_message


@pytest.mark.parametrize("streamed", [False, True], ids=["reply", "stream"])
def test_huge_token_counts_do_not_leave_the_reply_waiting(alice_client, conversation, streamed):
    if streamed:
        reply, _ = ask_streamed(alice_client, conversation, "huge_tokens")
    else:
        reply = ask(alice_client, conversation, "huge_tokens")

    assert reply.status == Message.Status.COMPLETE
    call = last_call(reply)
    assert call.prompt_tokens is None
    assert call.completion_tokens is not None  # the good counts are kept
    assert "prompt_tokens" in call.error_message
    assert_pages_answer(alice_client, conversation, reply)


def test_a_deep_stream_chunk_ends_the_stream_interrupted(alice_client, conversation):
    reply, events = ask_streamed(alice_client, conversation, "deep_chunk=100000")

    assert reply.status == Message.Status.INTERRUPTED
    assert reply.content == "**Demo "
    assert "nested deeper than 64 levels" in last_call(reply).error_message
    assert events[-1][0] == "done"
    assert_pages_answer(alice_client, conversation, reply)


def test_a_deep_reply_body_fails_naming_the_problem(alice_client, conversation):
    reply = ask(alice_client, conversation, "deep_chunk=100000")

    assert reply.status == Message.Status.FAILED
    assert "nested deeper than 64 levels" in last_call(reply).error_message
    assert_pages_answer(alice_client, conversation, reply)


def test_a_reply_whose_text_has_the_wrong_type_fails_naming_it(
    alice_client, conversation, upstream
):
    body = {"choices": [{"message": {"content": {"text": "hi"}}, "finish_reason": 7}]}
    upstream.script_next(body=json.dumps(body).encode())

    reply = ask(alice_client, conversation, "")

    assert reply.status == Message.Status.FAILED
    assert "content is an object, not text" in last_call(reply).error_message


def test_a_provider_error_message_of_any_shape_is_shown_bounded(
    alice_client, conversation, upstream
):
    body = {"message": "Bad\x00key \ud800" + "x" * 5000}
    upstream.script_next(status=400, body=json.dumps(body).encode())

    reply = ask(alice_client, conversation, "")

    message = last_call(reply).error_message
    assert message.startswith("The upstream answered 400 (Bad Request): Bad\ufffdkey \ufffd")
    assert len(message) < 1000
    assert_pages_answer(alice_client, conversation, reply)


# --- Finding 7: NUL in a reply (PostgreSQL cannot store it) -------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["reply", "stream"])
def test_a_reply_with_nul_is_saved_with_a_replacement_character(
    alice_client, conversation, streamed
):
    if streamed:
        reply, _ = ask_streamed(alice_client, conversation, "nul")
    else:
        reply = ask(alice_client, conversation, "nul")

    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert reply.content.startswith("Before\ufffdafter.")
    call = last_call(reply)
    assert "\\u0000" in call.response_body  # nothing lost: the escape as received
    assert "\x00" not in json.dumps(call.stream_events)
    assert_pages_answer(alice_client, conversation, reply)
