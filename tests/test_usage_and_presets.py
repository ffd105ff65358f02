"""Cost per reply (reported or estimated), totals, the usage page, and presets."""

import json
from decimal import Decimal

import pytest
from django.urls import reverse

from chat.models import ApiCall, Conversation, Preset
from tests.helpers import form_data, send

pytestmark = pytest.mark.django_db


def test_the_cost_comes_from_the_body_when_reported(alice_client, conversation):
    send(alice_client, conversation, "Hi")

    call = ApiCall.objects.get()
    body = json.loads(call.response_body)
    assert call.usd_spent == Decimal(str(body["meta"]["usage"]["usd_spent"]))
    assert not call.cost_estimated


def test_the_cost_comes_from_the_header_when_the_body_has_none(alice_client, conversation):
    send(alice_client, conversation, "Hi", extra_params='{"demo_fault": "no_cost_body"}')

    call = ApiCall.objects.get()
    assert "meta" not in json.loads(call.response_body)
    assert call.usd_spent == Decimal(call.response_headers["x-aimlapi-usd-spent"])
    assert not call.cost_estimated


def test_without_a_reported_cost_it_is_estimated_from_catalogue_pricing(alice_client, conversation):
    send(alice_client, conversation, "Hi", extra_params='{"demo_fault": "no_cost"}')

    call = ApiCall.objects.get()
    assert "x-aimlapi-usd-spent" not in call.response_headers
    # The demo's catalogue price: $2 per million tokens, input and output.
    expected = Decimal("0.000002") * (call.prompt_tokens + call.completion_tokens)
    assert call.usd_spent == expected and call.cost_estimated
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "(estimate)" in page


def test_a_model_without_pricing_gets_no_cost_rather_than_a_guess(alice_client, alice):
    conversation = Conversation.objects.create(owner=alice, model="local/llama")
    send(
        alice_client,
        conversation,
        "Hi",
        model="local/llama",
        extra_params='{"demo_fault": "no_cost"}',
    )

    call = ApiCall.objects.get()
    assert call.usd_spent is None and not call.cost_estimated


def test_each_reply_shows_its_tokens_speed_and_cost_and_the_conversation_its_totals(
    alice_client, conversation
):
    send(alice_client, conversation, "Hi")
    send(alice_client, conversation, "Again", model="demo/thinker")

    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    calls = list(ApiCall.objects.order_by("created"))
    assert f"{calls[0].prompt_tokens} in, {calls[0].completion_tokens} out" in page
    assert f"{calls[1].reasoning_tokens} reasoning" in page
    assert "tok/s" in page
    total_in = sum(c.prompt_tokens for c in calls)
    total_out = sum(c.completion_tokens for c in calls)
    assert f"2 calls · {total_in} in, {total_out} out" in page


def test_the_usage_page_shows_calls_by_day_and_model_with_a_chart(
    alice_client, conversation, bob_client
):
    send(alice_client, conversation, "Hi")
    send(alice_client, conversation, "Again", model="demo/thinker")

    page = alice_client.get(reverse("usage")).content.decode()

    assert "2 calls" in page
    assert "<svg" in page and page.count('class="bar"') == 1  # both calls today
    assert "<code>demo/echo</code>" in page and "<code>demo/thinker</code>" in page
    assert "No calls yet." in bob_client.get(reverse("usage")).content.decode()


# --- Presets ---------------------------------------------------------------------


def save_preset(client, conversation, name="Careful Claude", content="", **overrides):
    values = {
        "model": "anthropic/claude-sonnet-4.5",
        "system_prompt": "Be careful.",
        "temperature": "0.2",
        "schema__top_k": "20",
        "preset_name": name,
        **overrides,
    }
    data = form_data(content, **values)
    return client.post(reverse("preset_save", args=[conversation.public_id]), data)


def test_it_saves_a_preset_and_starts_a_conversation_from_it(alice_client, alice, conversation):
    response = save_preset(alice_client, conversation)
    assert response.status_code == 200
    assert "Saved preset “Careful Claude”" in response.content.decode()

    preset = Preset.objects.get(owner=alice)
    assert (preset.name, preset.model, preset.temperature) == (
        "Careful Claude",
        "anthropic/claude-sonnet-4.5",
        0.2,
    )
    assert preset.extra_params == {"top_k": 20.0}
    conversation.refresh_from_db()
    assert conversation.model == "demo/echo"  # saving a preset does not change the chat

    response = alice_client.post(reverse("preset_start", args=[preset.public_id]))
    started = Conversation.objects.exclude(pk=conversation.pk).get()
    assert response.url == started.get_absolute_url()
    assert (started.model, started.system_prompt, started.extra_params) == (
        "anthropic/claude-sonnet-4.5",
        "Be careful.",
        {"top_k": 20.0},
    )


def test_saving_under_the_same_name_replaces_the_preset(alice_client, alice, conversation):
    save_preset(alice_client, conversation)
    save_preset(alice_client, conversation, temperature="0.9")

    assert Preset.objects.get(owner=alice).temperature == 0.9


def test_a_preset_with_invalid_parameters_is_not_saved(alice_client, conversation):
    response = save_preset(
        alice_client, conversation, temperature="1.7", content="Half-written question"
    )

    assert response.status_code == 400
    assert not Preset.objects.exists()
    page = response.content.decode()
    assert "Preset not saved: fix the parameters first (temperature)." in page
    assert "temperature: must be at most 1." in page  # on the field itself
    assert 'name="temperature" value="1.7"' in page  # shown as typed, with its error
    assert "Half-written question</textarea>" in page


def test_saving_a_preset_keeps_the_panel_and_the_message_as_typed(alice_client, conversation):
    response = save_preset(alice_client, conversation, content="Half-written question")

    page = response.content.decode()
    assert 'name="temperature" value="0.2"' in page
    assert 'value="anthropic/claude-sonnet-4.5"' in page
    assert "Half-written question</textarea>" in page


def test_presets_belong_to_their_owner(alice_client, bob_client, conversation):
    save_preset(alice_client, conversation)
    preset = Preset.objects.get()

    assert "Careful Claude" not in bob_client.get(reverse("preset_list")).content.decode()
    assert bob_client.post(reverse("preset_start", args=[preset.public_id])).status_code == 404
    assert bob_client.post(reverse("preset_delete", args=[preset.public_id])).status_code == 404
    assert save_preset(bob_client, conversation).status_code == 404
    assert Preset.objects.count() == 1 and Conversation.objects.count() == 1

    alice_client.post(reverse("preset_delete", args=[preset.public_id]))
    assert not Preset.objects.exists()
