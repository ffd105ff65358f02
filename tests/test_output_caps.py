"""How much one call may ask for: replies per call ("n") and tokens per reply.

Capped by the operator (MAX_CHOICES, MAX_OUTPUT_TOKENS) and by the model's own output
limit from the catalogue (demo/echo: 4,096; openai/gpt-4o: 16,384), on every way a
request is built. A value over a cap is an error on the field that set it; nothing is
sent, nothing saved, and what was typed stays in the form.
"""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat.models import Conversation, Message
from tests.helpers import form_data, send, sent_bodies

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


def refused(response, field: str, text: str, upstream, form: str = "form") -> None:
    assert response.status_code == 400
    errors = response.context[form].errors.get(field, [])
    assert any(text in error for error in errors), response.context[form].errors
    assert upstream.chat_requests() == []


def test_max_tokens_past_the_models_own_limit_is_an_error_on_its_field(
    alice_client, conversation, upstream
):
    response = send(alice_client, conversation, "keep me", max_tokens="1000000")

    refused(response, "max_tokens", "demo/echo writes at most 4,096 tokens per reply", upstream)
    assert "keep me</textarea>" in response.content.decode()
    assert Message.objects.count() == 0


def test_max_tokens_past_the_operators_cap_is_refused_and_at_the_cap_it_is_sent(
    settings, alice_client, conversation, upstream
):
    settings.MAX_OUTPUT_TOKENS = 100

    over = send(alice_client, conversation, max_tokens="101")
    refused(over, "max_tokens", "this server allows at most 100 tokens per reply", upstream)

    assert send(alice_client, conversation, max_tokens="100").status_code == 302
    assert sent_bodies(upstream)[-1]["max_tokens"] == 100


def test_a_model_without_a_catalogue_limit_has_the_operators_cap(
    settings, alice_client, conversation, upstream
):
    over = send(alice_client, conversation, model="demo/not-in-catalogue", max_tokens="65537")
    refused(over, "max_tokens", "this server allows at most 65,536 tokens per reply", upstream)

    at_cap = send(alice_client, conversation, model="demo/not-in-catalogue", max_tokens="65536")
    assert at_cap.status_code == 302


@pytest.mark.parametrize(
    "extra, text",
    [
        ({"n": 128}, '"n" asks for 128 replies in one call; this server allows at most 8.'),
        ({"n": "128"}, '"n" asks for 128 replies'),
        ({"max_completion_tokens": 1_000_000}, '"max_completion_tokens" is 1,000,000'),
        ({"max_output_tokens": 10**30}, '"max_output_tokens" is'),
        ({"max_tokens": 5000}, "demo/echo writes at most 4,096"),
    ],
)
def test_extra_parameters_over_a_cap_are_an_error_on_the_extra_parameters(
    alice_client, conversation, upstream, extra, text
):
    response = send(alice_client, conversation, extra_params=json.dumps(extra))

    refused(response, "extra_params", text, upstream)


def test_replies_per_call_up_to_the_cap_are_sent(settings, alice_client, conversation, upstream):
    settings.MAX_CHOICES = 2

    assert send(alice_client, conversation, extra_params='{"n": 2}').status_code == 302
    assert sent_bodies(upstream)[-1]["n"] == 2


def test_schema_fields_over_a_cap_are_an_error_on_their_own_field(
    alice_client, conversation, upstream
):
    response = send(
        alice_client,
        conversation,
        model=GPT,
        schema__n="128",
        schema__max_completion_tokens="20000",
    )

    refused(response, "schema__n", '"n" asks for 128 replies', upstream)
    refused(
        response, "schema__max_completion_tokens", "openai/gpt-4o writes at most 16,384", upstream
    )


def test_send_anyway_does_not_pass_the_operators_caps(alice_client, conversation, upstream):
    response = send(alice_client, conversation, model=GPT, schema__n="128", send_anyway="on")

    refused(response, "schema__n", '"n" asks for 128 replies', upstream)


def raw(**body_overrides) -> str:
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": "raw hi"}]}
    return json.dumps({**body, **body_overrides})


@pytest.mark.parametrize(
    "overrides, text",
    [
        ({"n": 128}, '"n" asks for 128 replies'),
        ({"max_tokens": 1_000_000}, "demo/echo writes at most 4,096"),
        ({"max_completion_tokens": 70_000}, "demo/echo writes at most 4,096"),
    ],
)
def test_a_raw_request_body_over_a_cap_is_an_error_on_the_raw_body(
    alice_client, conversation, upstream, overrides, text
):
    response = send(alice_client, conversation, "", use_raw="on", raw_body=raw(**overrides))

    refused(response, "raw_body", text, upstream)


def test_a_raw_request_body_within_the_caps_is_sent(alice_client, conversation, upstream):
    response = send(alice_client, conversation, "", use_raw="on", raw_body=raw(n=2, max_tokens=9))

    assert response.status_code == 302
    assert sent_bodies(upstream)[-1]["n"] == 2


def test_a_compare_column_over_a_cap_is_an_error_in_that_column(
    alice_client, conversation, upstream
):
    response = alice_client.post(
        reverse("compare_new", args=[conversation.public_id]),
        {
            "content": "compare me",
            "idempotency_key": "k",
            "column-1-model": "demo/echo",
            "column-2-model": "demo/echo",
            "column-2-extra_params": '{"n": 64}',
        },
    )

    assert response.status_code == 400
    column = response.context["columns"][1]
    assert any('"n" asks for 64 replies' in error for error in column.errors["extra_params"])
    assert upstream.chat_requests() == []


def test_regenerate_over_a_cap_is_refused(alice_client, conversation, upstream):
    send(alice_client, conversation, "one")
    reply = Message.objects.get(role="assistant")
    upstream.clear()

    response = alice_client.post(
        reverse("reply_regenerate", args=[conversation.public_id, reply.public_id]),
        form_data("", max_tokens="999999"),
    )

    assert response.status_code == 400
    assert upstream.chat_requests() == []
    assert Message.objects.filter(role="assistant").count() == 1


def test_save_parameters_over_a_cap_saves_nothing(alice_client, conversation):
    response = alice_client.post(
        reverse("parameters_save", args=[conversation.public_id]),
        form_data("", extra_params='{"n": 100}'),
    )

    assert response.status_code == 400
    conversation.refresh_from_db()
    assert conversation.extra_params == {}


def import_file(client, parameters: dict):
    document = {
        "format": "playground.conversations",
        "version": 1,
        "conversations": [
            {
                "title": "Imported",
                "model": "demo/echo",
                "parameters": parameters,
                "messages": [{"id": "a", "role": "user", "content": "Hi"}],
            }
        ],
    }
    upload = SimpleUploadedFile("x.json", json.dumps(document).encode())
    return client.post(reverse("conversations_import"), {"file": upload})


def test_an_import_over_the_operators_caps_is_refused_whole(bob_client):
    response = import_file(bob_client, {"extra_params": {"n": 128}})

    assert response.status_code == 400
    assert "&quot;n&quot; asks for 128 replies" in response.content.decode()
    assert not Conversation.objects.exists()


def test_an_import_checks_no_model_limit_so_it_makes_no_catalogue_call(bob_client, upstream):
    response = import_file(bob_client, {"max_tokens": 5000})  # demo/echo's own limit: 4,096

    assert response.status_code == 302
    assert Conversation.objects.get().max_tokens == 5000
    assert upstream.requests == []  # neither the catalogue nor a schema was fetched
