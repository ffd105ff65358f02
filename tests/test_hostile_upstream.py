"""A hostile upstream: every reply value is bounded and validated where it enters, and a
reply always ends, with a message that names the problem and the good text kept.

Driven through the app's views, against the demo upstream's chat faults over real HTTP
(and its scripted answers for bodies a test writes byte for byte).
"""

import html
import json
import os
import time

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.models import ApiCall, Conversation, Message, Share
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
    settings.UPSTREAM_CALLS_PER_MINUTE = 0  # the generated cases make many calls


def fault(spec: str) -> str:
    return json.dumps({"demo_fault": spec})


def ask(client: Client, conversation, spec: str) -> Message:
    """A non-streamed reply under the fault `spec`; the reply as stored."""
    response = send(client, conversation, "Hostile?", extra_params=fault(spec))
    assert response.status_code == 302, response.status_code
    # With several choices, the first holds the call; the others are its siblings.
    return Message.objects.filter(role="assistant").exclude(choice_index__gt=0).latest("created")


def ask_either_way(client: Client, conversation, spec: str, *, streamed: bool) -> Message:
    """The reply under the fault `spec`, streamed or through the form path."""
    if streamed:
        return ask_streamed(client, conversation, spec)[0]
    return ask(client, conversation, spec)


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
    # With several choices, the first holds the call; the others are its siblings.
    replies = Message.objects.filter(role="assistant").exclude(choice_index__gt=0)
    return replies.latest("created"), events


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
    reply = ask_either_way(alice_client, conversation, "surrogate", streamed=streamed)

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
    reply = ask_either_way(alice_client, conversation, "nan_cost", streamed=streamed)

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
    reply = ask_either_way(alice_client, conversation, "huge_tokens", streamed=streamed)

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
    reply = ask_either_way(alice_client, conversation, "nul", streamed=streamed)

    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert reply.content.startswith("Before\ufffdafter.")
    call = last_call(reply)
    assert "\\u0000" in call.response_body  # nothing lost: the escape as received
    assert "\x00" not in json.dumps(call.stream_events)
    assert_pages_answer(alice_client, conversation, reply)


# --- Generated replies: no 500, no reply left pending, nothing half-saved -----

GENERATED = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", 30)),
    deadline=None,  # the machine is shared; speed is measured by bench/, not here
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
nasty_text = st.lists(
    st.one_of(st.text(max_size=20), st.sampled_from(["\x00", "\ud800", "\udfff", "\ufffd", "<b>"])),
    max_size=4,
).map("".join)
nasty_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
    st.sampled_from(["NaN", "1e10", "-5", "Infinity", "0.000123", "1e-30", 10**20]),
)
nasty_value = st.recursive(
    nasty_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3),
    max_leaves=8,
)
counts = st.dictionaries(
    st.sampled_from(
        ["prompt_tokens", "completion_tokens", "total_tokens", "completion_tokens_details"]
    ),
    st.one_of(nasty_scalar, st.fixed_dictionaries({"reasoning_tokens": nasty_scalar})),
)
extras = {
    "usage": st.one_of(nasty_value, counts),
    "meta": st.one_of(
        nasty_value,
        st.fixed_dictionaries({"usage": st.fixed_dictionaries({"usd_spent": nasty_scalar})}),
    ),
    "id": nasty_value,
    "model": nasty_value,
}
text_field = st.one_of(nasty_text, nasty_value)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


reply_bodies = st.one_of(
    st.fixed_dictionaries(
        {
            "choices": st.one_of(
                nasty_value,
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "message": st.one_of(
                                nasty_value,
                                st.fixed_dictionaries(
                                    {"content": text_field},
                                    optional={"reasoning_content": text_field},
                                ),
                            ),
                            "finish_reason": nasty_value,
                        }
                    ),
                    min_size=1,
                    max_size=2,
                ),
            )
        },
        optional=extras,
    ).map(json.dumps),
    st.integers(min_value=1, max_value=3000).map(deep),
    st.binary(max_size=100).map(lambda data: data.decode("latin-1")),
)
stream_chunks = st.one_of(
    st.fixed_dictionaries(
        {
            "choices": st.lists(
                st.fixed_dictionaries(
                    {
                        "delta": st.one_of(
                            nasty_value,
                            st.fixed_dictionaries(
                                {"content": text_field}, optional={"reasoning_content": text_field}
                            ),
                        ),
                        "finish_reason": nasty_value,
                    }
                ),
                max_size=1,
            )
        },
        optional=extras,
    ).map(json.dumps),
    st.integers(min_value=1, max_value=3000).map(deep),
    nasty_text,
)
cost_headers = st.dictionaries(
    st.just("x-aimlapi-usd-spent"), st.sampled_from(["1e10", "NaN", "-5", "0.001", "", "inf"])
)


def assert_nothing_half_saved(reply: Message, ended: set[str]) -> None:
    reply.refresh_from_db()
    assert reply.status in ended
    assert all(call.status != ApiCall.Status.SENDING for call in reply.calls.all())


@GENERATED
@given(body=reply_bodies, status=st.sampled_from([200, 200, 200, 400, 503]), headers=cost_headers)
def test_any_reply_body_ends_the_reply_without_a_500(
    alice_client, alice, upstream, settings, body, status, headers
):
    settings.UPSTREAM_MAX_RETRIES = 0
    upstream.clear()
    conversation = Conversation.objects.create(owner=alice, model="demo/echo")
    upstream.script_next(status=status, headers=headers, body=body.encode("utf-8", "surrogatepass"))

    reply = ask(alice_client, conversation, "")

    assert_nothing_half_saved(reply, {Message.Status.COMPLETE, Message.Status.FAILED})
    assert_pages_answer(alice_client, conversation, reply)


@GENERATED
@given(chunks=st.lists(stream_chunks, max_size=4), done=st.booleans(), headers=cost_headers)
def test_any_stream_ends_the_reply_without_a_500(
    alice_client, alice, upstream, settings, chunks, done, headers
):
    upstream.clear()
    conversation = Conversation.objects.create(owner=alice, model="demo/echo")
    events = [f"data: {chunk}\n\n".encode("utf-8", "surrogatepass") for chunk in chunks]
    upstream.script_next(headers=headers, chunks=[*events, *([b"data: [DONE]\n\n"] * done)])

    reply, events_seen = ask_streamed(alice_client, conversation)

    assert events_seen[-1][0] == "done"
    assert_nothing_half_saved(reply, {Message.Status.COMPLETE, Message.Status.INTERRUPTED})
    assert_pages_answer(alice_client, conversation, reply)


# --- A final save the database refuses still ends the reply -------------------

REFUSED_MARK = "REFUSE-ME"


@pytest.fixture
def database_refuses_the_mark():
    """Triggers that make the database refuse any update writing REFUSED_MARK into a
    reply's text or a call's raw response (as PostgreSQL refuses a NUL)."""
    tables = {"chat_message": "content", "chat_apicall": "response_body"}
    with connection.cursor() as cursor:
        for table, column in tables.items():
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"CREATE FUNCTION refuse_{table}() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.{column} LIKE '%{REFUSED_MARK}%' THEN "
                    "RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END; "
                    "$$ LANGUAGE plpgsql"
                )
                cursor.execute(
                    f"CREATE TRIGGER refuse_{table} BEFORE UPDATE ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"
                )
            else:
                cursor.execute(
                    f"CREATE TRIGGER refuse_{table} BEFORE UPDATE ON {table} "
                    f"WHEN NEW.{column} LIKE '%{REFUSED_MARK}%' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
    yield  # the test's transaction is rolled back, triggers included


@pytest.mark.parametrize("streamed", [False, True], ids=["reply", "stream"])
def test_a_reply_whose_final_save_is_refused_still_ends(
    alice_client, conversation, database_refuses_the_mark, streamed
):
    url = reverse("message_stream" if streamed else "message_send", args=[conversation.public_id])
    response = alice_client.post(url, form_data(f"Please say {REFUSED_MARK}"))
    if streamed:
        assert list(response.streaming_content)
    else:
        assert response.status_code == 302

    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.FAILED
    assert reply.content == ""
    call = last_call(reply)
    assert call.status == ApiCall.Status.FAILED
    assert call.error_message == (
        "The database refused this call's full record (the error was logged); "
        "only this summary was kept."
    )
    assert_pages_answer(alice_client, conversation, reply)
