"""Property-based tests: whatever a user (or a file) sends, the app answers without a 500.

Hypothesis generates the input; each test states what must hold for all of it. A refused
input must also leave nothing half-saved.
"""

import json
import re
import string
from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat import conversations, exports, request_body
from chat.compare import COMPARE_KEY_PREFIX
from chat.forms import ChatForm
from chat.markdown import render_markdown
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

PROPERTY = settings(
    max_examples=60,
    deadline=None,  # the machine is shared; speed is measured by bench/, not here
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as a browser may send it: any Unicode, NULs and control characters included.
any_text = st.text(max_size=300)
numberish = st.one_of(
    any_text,
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
    st.sampled_from(["", "1e309", "-0", "NaN", "inf", "0x10", "1_000", " 1 ", "٣"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
form_fields = st.fixed_dictionaries(
    {
        "content": any_text,
        "model": any_text,
        "system_prompt": any_text,
        "temperature": numberish,
        "top_p": numberish,
        "max_tokens": numberish,
        "stop": any_text,
        "extra_params": st.one_of(any_text, json_values.map(json.dumps)),
        "idempotency_key": st.text(alphabet=string.ascii_letters, min_size=1, max_size=80),
    }
)


@pytest.fixture
def conversation(alice, settings):
    settings.UPSTREAM_CALLS_PER_MINUTE = 0
    return Conversation.objects.create(owner=alice, model="demo/echo")


def post_and_check_what_was_saved(client, url, data, *, key, adds):
    """Post a send: answered 302 or 400, never 500; a 302 saves `adds` messages, and a
    400, or a resubmit of an earlier send (the same `key`), saves nothing new."""
    before = Message.objects.count()
    key_used = Message.objects.filter(idempotency_key=key).exists()

    response = client.post(url, data)

    assert response.status_code in {302, 400}
    saved = Message.objects.count() - before
    assert saved == (0 if response.status_code == 400 or key_used else adds)


@PROPERTY
@given(data=form_fields)
def test_the_chat_form_never_fails_with_a_500(alice_client, conversation, data):
    url = reverse("message_send", args=[conversation.public_id])
    post_and_check_what_was_saved(alice_client, url, data, key=data["idempotency_key"], adds=2)


@PROPERTY
@given(first=form_fields, second=form_fields)
def test_the_compare_form_never_fails_with_a_500(alice_client, conversation, first, second):
    data = {"content": first["content"], "idempotency_key": first["idempotency_key"]}
    for number, column in ((1, first), (2, second)):
        for name in conversations.PANEL_FIELDS:
            data[f"column-{number}-{name}"] = column[name]
    url = reverse("compare_new", args=[conversation.public_id])
    compare_key = COMPARE_KEY_PREFIX + data["idempotency_key"]
    # Saved: the prompt and one reply per column.
    post_and_check_what_was_saved(alice_client, url, data, key=compare_key, adds=3)


# Issue 5: the schema-built fields of the three bundled models, raw request mode and
# "Send anyway", each with any text or JSON a browser could post.
SCHEMA_MODELS = ["anthropic/claude-sonnet-4.5", "openai/gpt-4o", "deepseek/deepseek-r1"]
SCHEMA_FIELDS = ["top_k", "thinking", "tools", "tool_choice", "stop_sequences", "n",
                 "response_format", "frequency_penalty", "parallel_tool_calls", "logit_bias"]  # fmt: skip
schema_values = st.one_of(any_text, numberish, json_values.map(json.dumps))
panel_fields = st.fixed_dictionaries(
    {
        "model": st.sampled_from(SCHEMA_MODELS),
        "send_anyway": st.sampled_from(["", "on"]),
        "use_raw": st.sampled_from(["", "on"]),
        "raw_body": st.one_of(any_text, json_values.map(json.dumps)),
    },
    optional={f"schema__{name}": schema_values for name in SCHEMA_FIELDS},
)


@PROPERTY
@given(panel=panel_fields, data=form_fields)
def test_the_schema_panel_and_raw_mode_never_fail_with_a_500(
    alice_client, conversation, panel, data
):
    data = {**data, **panel, "content": data["content"] or "Hello"}
    url = reverse("message_send", args=[conversation.public_id])
    post_and_check_what_was_saved(alice_client, url, data, key=data["idempotency_key"], adds=2)
    panel_response = alice_client.post(
        reverse("parameters_panel", args=[conversation.public_id]), data
    )
    assert panel_response.status_code == 200


@PROPERTY
@given(data=form_fields)
def test_a_valid_form_always_makes_a_json_body_of_only_what_was_set(conversation, data):
    form = ChatForm(data)
    if not form.is_valid():
        assert form.errors  # refused with a reason
        return
    conversations.conversation_update_parameters(
        conversation=conversation, parameters=form.cleaned_data
    )

    body = request_body.build_payload(conversation=conversation, leaf_id=None)

    json.dumps(body, allow_nan=False)  # what goes over the wire is strict JSON
    for name in ("temperature", "top_p", "max_tokens"):
        assert (name in body) == (form.cleaned_data[name] is not None)


@PROPERTY
@given(value=json_values, where=st.sampled_from(["title", "model", "parameters", "messages"]))
def test_an_import_with_any_value_anywhere_is_imported_or_refused_whole(bob, value, where):
    document = {
        "format": "playground.conversations",
        "version": 1,
        "conversations": [
            {
                "title": "t",
                "model": "m",
                "messages": [{"id": "a", "role": "user", "content": "hi"}],
                where: value,
            }
        ],
    }
    before = Conversation.objects.count()
    try:
        exports.conversations_import(owner=bob, data=json.dumps(document).encode())
    except exports.ImportRejected as error:
        assert str(error)  # a reason, naming the place
        assert Conversation.objects.count() == before


@PROPERTY
@given(data=st.binary(max_size=400))
def test_any_bytes_uploaded_as_an_import_get_an_answer(bob, data):
    client = Client()
    client.force_login(bob)
    upload = SimpleUploadedFile("x.json", data, content_type="application/json")
    response = client.post(reverse("conversations_import"), {"file": upload})

    assert response.status_code in {302, 400}


class ActiveContent(HTMLParser):
    """Collects the tags, handlers and link targets that could run or fetch anything."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in {"p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote",
                       "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
                       "span", "h1", "h2", "h3", "h4", "h5", "h6"}:  # fmt: skip
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in {"src", "style", "srcset"}:
                self.found.append(f"{name} on <{tag}>")
            # A scheme is a letter then letters, digits, "+", "-" or "." (RFC 3986);
            # anything else before a colon makes the link relative, and harmless.
            target = "".join((value or "").split()).lower()
            scheme = re.match(r"([a-z][a-z0-9+.-]*):", target)
            if name == "href" and scheme and scheme.group(1) not in {"http", "https", "mailto"}:
                self.found.append(f"href={value}")


@PROPERTY
@given(text=st.text(max_size=400))
def test_rendered_markdown_never_carries_active_content(text):
    parser = ActiveContent()
    parser.feed(str(render_markdown(text)))

    assert parser.found == []


HOSTILE_FRAGMENTS = ["<", ">", "[x](", ")", "javascript:", "![i](", "<img ", "onerror=",
                     "alert(1)", "\n", "`", "<script>", "&#x6A;", "data:", " "]  # fmt: skip


@PROPERTY
@given(text=st.lists(st.sampled_from(HOSTILE_FRAGMENTS), max_size=30).map("".join))
@example(text="[x](>data:)")  # a relative link "%3Edata:", not a data: URL
def test_rendered_markdown_from_hostile_fragments_carries_no_active_content(text):
    parser = ActiveContent()
    parser.feed(str(render_markdown(text)))

    assert parser.found == []
