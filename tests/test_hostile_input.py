"""Hostile input a user types or uploads: refused with a message on its field, never a 500."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from chat import branches, compare, services
from chat.models import Conversation, Message
from tests.helpers import form_data, panel, send

pytestmark = pytest.mark.django_db

CLAUDE = "anthropic/claude-sonnet-4.5"

# JSON that Python's parser takes but no database (nor the upstream) does, and what the
# field's message must say about it.
HOSTILE_JSON = {
    "NaN": ("NaN", "NaN is not a JSON number"),
    "Infinity": ("Infinity", "Infinity is not a JSON number"),
    "-Infinity": ("-Infinity", "-Infinity is not a JSON number"),
    "a number too large for a float": ("1e400", "1e400 is too large"),
    "a NUL character": ('"a\\u0000b"', "NUL character"),
    "a lone surrogate": ('"\\ud800"', "unpaired surrogate"),
    "a lone surrogate in a key": ('{"\\udfff": 1}', "unpaired surrogate"),
}
CASES = list(HOSTILE_JSON.values())
IDS = list(HOSTILE_JSON)


@pytest.fixture
def claude(alice):
    return Conversation.objects.create(owner=alice, model=CLAUDE)


def assert_refused_and_kept(response, field: str, typed: str, message: str, upstream) -> None:
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert message in errors
    assert response.context["form"][field].value() == typed  # the text as typed, kept
    assert not Message.objects.exists()
    assert upstream.chat_requests() == []


@pytest.mark.parametrize("value, message", CASES, ids=IDS)
def test_it_refuses_hostile_json_in_extra_parameters_on_its_field(
    alice_client, conversation, upstream, value, message
):
    typed = f'{{"top_k": {value}}}'

    response = send(alice_client, conversation, "Hello", extra_params=typed)

    assert_refused_and_kept(response, "extra_params", typed, message, upstream)
    assert "already submitted" not in response.content.decode()


@pytest.mark.parametrize("value, message", CASES, ids=IDS)
def test_it_refuses_hostile_json_in_a_schema_json_field_on_its_field(
    alice_client, claude, upstream, value, message
):
    typed = f'{{"type": "enabled", "budget_tokens": {value}}}'

    response = send(
        alice_client, claude, "Hello", model=CLAUDE, schema__thinking=typed, send_anyway="on"
    )

    assert_refused_and_kept(response, "schema__thinking", typed, message, upstream)


@pytest.mark.parametrize("value, message", CASES, ids=IDS)
def test_it_refuses_hostile_json_in_a_raw_body_on_its_field(
    alice_client, conversation, upstream, value, message
):
    typed = (
        '{"model": "demo/echo", "temperature": 0.5, "x": ' + value + ", "
        '"messages": [{"role": "user", "content": "Hi"}]}'
    )

    response = send(alice_client, conversation, "", use_raw="on", raw_body=typed)

    assert_refused_and_kept(response, "raw_body", typed, message, upstream)


@pytest.mark.parametrize("value, message", CASES, ids=IDS)
def test_save_parameters_refuses_hostile_json_with_a_400_not_a_500(
    alice_client, conversation, value, message
):
    typed = f'{{"top_k": {value}}}'
    url = reverse("parameters_save", args=[conversation.public_id])

    response = alice_client.post(url, form_data("", extra_params=typed))

    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors["extra_params"])
    conversation.refresh_from_db()
    assert conversation.extra_params == {}


def test_a_refusal_by_the_database_is_not_called_a_reused_form(conversation):
    # A value no form lets through, given to the service directly: the database refuses
    # it (SQLite: a CHECK constraint, an IntegrityError; PostgreSQL: a DataError).
    refused = panel(extra_params={"top_k": float("nan")})

    with pytest.raises(ValidationError) as raised:
        services.message_start(
            conversation=conversation, content="Hi", idempotency_key="k1", parameters=refused
        )

    assert services.KEY_REUSED not in raised.value.messages
    assert raised.value.messages == [services.START_REFUSED]
    assert not Message.objects.exists()


def test_a_regenerate_refused_by_the_database_is_not_called_a_reused_form(
    alice_client, conversation
):
    send(alice_client, conversation, "Hi")
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)

    with pytest.raises(ValidationError) as raised:
        branches.reply_regenerate_start(
            conversation=conversation,
            reply=reply,
            idempotency_key="k2",
            parameters=panel(extra_params={"top_k": float("inf")}),
        )

    assert raised.value.messages == [services.START_REFUSED]
    assert conversation.messages.count() == 2


def test_a_compare_refused_by_the_database_is_not_called_a_reused_form(conversation):
    columns = [panel(), panel(extra_params={"top_k": float("nan")})]

    with pytest.raises(ValidationError) as raised:
        compare.compare_start(
            conversation=conversation,
            content="Hi",
            idempotency_key="k3",
            parameter_sets=columns,
            claim=True,
        )

    assert raised.value.messages == [services.START_REFUSED]
    assert not Message.objects.exists()


def test_a_reused_form_token_is_still_called_a_reused_form(alice_client, conversation):
    data = form_data("Hi")
    url = reverse("message_send", args=[conversation.public_id])
    alice_client.post(url, data)
    key = data["idempotency_key"]
    # The same token on another kind of submit (only a hand-made form does that).
    conversation.messages.filter(idempotency_key=key).update(idempotency_key="c:" + key)

    with pytest.raises(ValidationError) as raised:
        compare.compare_start(
            conversation=conversation,
            content="Hi",
            idempotency_key=key,
            parameter_sets=[panel(), panel()],
            claim=True,
        )
    assert raised.value.messages == [services.KEY_REUSED]
