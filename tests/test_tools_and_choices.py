"""Tool calls round trip, several choices, refusals: shown, stored and sent back."""

import json

import pytest
from django.urls import reverse

from chat.models import ApiCall, Message
from tests.helpers import send, sent_bodies
from tests.test_streaming import read_all, start_stream

pytestmark = pytest.mark.django_db

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOOLS = json.dumps({"tools": [WEATHER], "parallel_tool_calls": False})


def post_results(client, conversation, reply, *results):
    url = reverse("tool_results_send", args=[conversation.public_id, reply.public_id])
    data = {"tools-idempotency_key": "tool-key-1"}
    data.update({f"tools-result_{index}": text for index, text in enumerate(results)})
    return client.post(url, data)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_tool_call_is_shown_as_a_card_and_its_result_goes_back(
    alice_client, conversation, upstream, streamed
):
    if streamed:
        read_all(start_stream(alice_client, conversation, "Weather in Oslo?", extra_params=TOOLS))
    else:
        send(alice_client, conversation, "Weather in Oslo?", extra_params=TOOLS)
    reply = Message.objects.get(role="assistant")
    (call,) = reply.tool_calls
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "demo"}
    assert reply.status == Message.Status.COMPLETE and reply.finish_reason == "tool_calls"
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "get_weather" in page and call["id"] in page and "Tool results" in page
    assembled = ApiCall.objects.get().assembled_response if streamed else None
    if streamed:
        assert assembled["choices"][0]["message"]["tool_calls"][0]["id"] == call["id"]

    response = post_results(alice_client, conversation, reply, '{"temp": 21}')

    assert response.status_code == 302
    body = sent_bodies(upstream)[-1]
    assert body["messages"][-2] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert body["messages"][-1] == {
        "role": "tool",
        "content": '{"temp": 21}',
        "tool_call_id": call["id"],
    }
    answer = Message.objects.filter(role="assistant").latest("created")
    assert f'Tool result for {call["id"]}: {{"temp": 21}}' in answer.content


def test_claude_gets_tool_use_and_tool_result_blocks(alice_client, conversation, upstream):
    conversation.model = "anthropic/claude-sonnet-4.5"
    conversation.save()
    send(
        alice_client,
        conversation,
        "Weather?",
        model="anthropic/claude-sonnet-4.5",
        extra_params=json.dumps({"tools": [WEATHER]}),
        send_anyway="on",
    )
    reply = Message.objects.get(role="assistant")

    post_results(alice_client, conversation, reply, *["sunny"] * len(reply.tool_calls))

    body = sent_bodies(upstream)[-1]
    assistant, results = body["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert [block["type"] for block in assistant["content"]] == ["tool_use"] * len(reply.tool_calls)
    assert results["role"] == "user"
    assert [block["tool_use_id"] for block in results["content"]] == [
        call["id"] for call in reply.tool_calls
    ]


def test_results_for_a_reply_without_tool_calls_are_refused(alice_client, conversation):
    send(alice_client, conversation, "Hi")
    reply = Message.objects.get(role="assistant")

    response = post_results(alice_client, conversation, reply)

    assert response.status_code == 400
    assert "Only a finished reply with tool calls takes tool results." in response.content.decode()


def test_tool_results_are_owner_checked(alice_client, bob_client, conversation):
    send(alice_client, conversation, "Weather?", extra_params=TOOLS)
    reply = Message.objects.get(role="assistant")

    assert post_results(bob_client, conversation, reply, "x").status_code == 404


@pytest.mark.parametrize("streamed", [False, True])
def test_every_choice_is_kept_and_shown_by_index(alice_client, conversation, upstream, streamed):
    if streamed:
        events = read_all(start_stream(alice_client, conversation, "Two", extra_params='{"n": 2}'))
        deltas = [data for kind, data in events if kind == "delta"]
        texts = {}
        for delta in deltas:
            for index, part in (delta.get("choices") or {"0": delta}).items():
                texts[str(index)] = texts.get(str(index), "") + part["content"]
        assert texts["0"].startswith("Choice 1") and texts["1"].startswith("Choice 2")
    else:
        send(alice_client, conversation, "Two", extra_params='{"n": 2}')

    first, second = Message.objects.filter(role="assistant").order_by("choice_index")
    assert (first.choice_index, second.choice_index) == (0, 1)
    assert first.content.startswith("Choice 1") and second.content.startswith("Choice 2")
    assert "Choice 2" not in first.content  # not interleaved
    assert first.parent_id == second.parent_id and first.finish_reason and second.finish_reason
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "Continue with choice 2" in page


def test_continuing_with_another_choice_sends_that_one(alice_client, conversation, upstream):
    send(alice_client, conversation, "Two", extra_params='{"n": 2}')
    second = Message.objects.get(role="assistant", choice_index=1)
    alice_client.post(reverse("branch_switch", args=[conversation.public_id, second.public_id]))

    send(alice_client, conversation, "Go on", extra_params="")

    body = sent_bodies(upstream)[-1]
    assert body["messages"][1] == {"role": "assistant", "content": second.content}


@pytest.mark.parametrize("streamed", [False, True])
def test_a_refusal_is_shown_apart_from_the_content(alice_client, conversation, streamed):
    if streamed:
        read_all(start_stream(alice_client, conversation, "Please [refuse]"))
    else:
        send(alice_client, conversation, "Please [refuse]")

    reply = Message.objects.get(role="assistant")
    assert "demo refusal" in reply.refusal and reply.content == ""
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert 'class="refusal"' in page and "demo refusal" in page


def test_logprobs_show_as_a_token_view_readable_without_javascript(alice_client, conversation):
    send(
        alice_client, conversation, "Tell me", extra_params='{"logprobs": true, "top_logprobs": 2}'
    )

    reply = Message.objects.get(role="assistant")
    assert reply.logprobs["content"]
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert 'class="logprobs"' in page and 'class="tok shade-' in page
    assert "Tokens as a table" in page


def test_a_reply_is_checked_against_the_json_schema_it_was_asked_for(
    alice_client, conversation, upstream
):
    schema = {"type": "object", "required": ["answer"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    send(
        alice_client,
        conversation,
        "Hi",
        extra_params=json.dumps({"response_format": response_format}),
        send_anyway="on",  # the demo's schema offers json_object only: the upstream decides
    )

    assert ApiCall.objects.get().response_format == response_format
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    # The demo answers prose, so the check says it is not JSON.
    assert "structured-check" in page and "Not JSON" in page


def test_annotations_are_kept_and_shown(alice_client, conversation, upstream):
    citation = {
        "type": "url_citation",
        "url_citation": {"url": "https://example.com/a", "title": "A"},
    }
    body = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "See A.", "annotations": [citation]},
                "finish_reason": "stop",
            }
        ]
    }
    upstream.script_next(body=json.dumps(body).encode())

    send(alice_client, conversation, "Cite")

    reply = Message.objects.get(role="assistant")
    assert reply.extra == {"annotations": [citation]}
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "Annotations (1)" in page and "https://example.com/a" in page
    assert 'href="https://example.com/a"' not in page  # shown, not linked
