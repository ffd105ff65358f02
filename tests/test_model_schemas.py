"""The parameter panel built from each model's OpenAPI schema, and the check before sending."""

import json
from decimal import Decimal

import pytest
from django import forms as django_forms
from django.urls import reverse

from chat import catalogue, client, schema_form, structured_output, tools_editor
from chat.forms import ParametersForm
from chat.models import Conversation, Message
from tests.helpers import send, sent_bodies

pytestmark = pytest.mark.django_db

CLAUDE = "anthropic/claude-sonnet-4.5"
GPT = "openai/gpt-4o"
DEEPSEEK = "deepseek/deepseek-r1"


@pytest.fixture
def conversation(alice):
    return Conversation.objects.create(owner=alice, model=CLAUDE)


def panel(model: str) -> ParametersForm:
    return ParametersForm(initial={"model": model})


def test_claude_gets_its_own_ranges_and_nested_objects_from_its_schema():
    form = panel(CLAUDE)

    assert form.schema.source == "upstream"  # the catalogue's docsJson, served by the demo
    assert "Range 0–1." in form.fields["temperature"].help_text
    assert "Default 32000." in form.fields["max_tokens"].help_text
    top_k = form.fields["schema__top_k"]
    assert isinstance(top_k, django_forms.FloatField)
    assert "At least 0." in top_k.help_text
    assert "Only sample from the top K options" in top_k.help_text  # the description
    assert isinstance(form.fields["schema__thinking"], schema_form.JsonField)
    assert isinstance(form.fields["schema__tools"], tools_editor.ToolsField)  # Anthropic's shape
    assert isinstance(form.fields["schema__stop_sequences"], schema_form.ListField)
    # Claude's top-level `system` is the panel's System prompt, shown once.
    assert "schema__system" not in form.fields
    assert "schema__frequency_penalty" not in form.fields  # not a Claude parameter
    assert "schema__stream" not in form.fields and "schema__messages" not in form.fields


def test_gpt_4o_gets_the_openai_set_with_its_own_ranges():
    form = panel(GPT)

    assert "Range 0–2." in form.fields["temperature"].help_text
    assert "Range 0.01–1." in form.fields["top_p"].help_text
    assert "Range -2–2." in form.fields["schema__frequency_penalty"].help_text
    assert "Range 0–20." in form.fields["schema__top_logprobs"].help_text
    assert isinstance(form.fields["schema__n"], django_forms.IntegerField)
    parallel = form.fields["schema__parallel_tool_calls"]
    assert [value for value, _ in parallel.choices] == ["", "true", "false"]
    response_format = form.fields["schema__response_format"]
    assert isinstance(response_format, structured_output.EditorField)  # it offers json_schema
    assert isinstance(form.fields["schema__tool_choice"], tools_editor.ToolChoiceField)
    assert "schema__thinking" not in form.fields


def test_deepseek_r1_gets_its_sampling_parameters():
    form = panel(DEEPSEEK)

    assert "Range 0.001–0.999." in form.fields["schema__min_p"].help_text
    assert "schema__top_k" in form.fields
    assert "schema__repetition_penalty" in form.fields
    assert isinstance(form.fields["schema__echo"], django_forms.TypedChoiceField)


def test_a_string_enum_becomes_a_select_and_a_boolean_a_three_way_choice():
    form = panel("demo/thinker")

    effort = form.fields["schema__reasoning_effort"]
    assert [value for value, _ in effort.choices] == ["", "low", "medium", "high"]
    thinking = form.fields["schema__enable_thinking"]
    assert [label for _, label in thinking.choices] == ["— not sent —", "true", "false"]


def test_a_model_without_a_schema_gets_the_common_set_and_free_json(alice_client, alice):
    conversation = Conversation.objects.create(owner=alice, model="local/llama-3")

    form = panel("local/llama-3")
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert form.schema is None and form.schema_fields == []
    assert "No schema is known for this model" in page
    assert "Extra parameters (JSON)" in page


def test_the_bundled_documents_stand_in_when_the_catalogue_has_no_schema_link(upstream):
    upstream.models_shape = "openai"  # OpenAI's /models shape: no docsJson

    form = panel("gpt-4o")  # an alias, matched against the document's own model enum

    assert form.schema.source == "bundled"
    assert "schema__response_format" in form.fields
    assert not any(r.path.startswith("/docs-json") for r in upstream.requests)


def test_a_schema_link_off_the_upstream_is_never_fetched(upstream, settings):
    assert client.is_upstream_url(f"{upstream.base_url.removesuffix('/v1')}/docs-json?model=x")
    assert not client.is_upstream_url("http://169.254.169.254/latest/meta-data")
    assert not client.is_upstream_url(upstream.base_url.replace("http:", "file:"))
    # The demo answers on this origin too, under another name: only the guard stops the call.
    elsewhere = upstream.base_url.replace("127.0.0.1", "localhost").removesuffix("/v1")
    with pytest.raises(client.UpstreamError) as refused:
        client.fetch_json_document(f"{elsewhere}/docs-json?model=demo/echo")
    assert refused.value.kind == "refused"
    assert not any(r.path.startswith("/docs-json") for r in upstream.requests)


def test_the_schema_document_is_fetched_once_and_cached(upstream):
    panel(CLAUDE)
    panel(CLAUDE)
    ParametersForm(initial={"model": "claude-sonnet-4-5"})  # an alias of the same model

    assert len([r for r in upstream.requests if r.path.startswith("/docs-json")]) == 1


# --- Sending: only set fields, the check, Send anyway ---------------------------


def test_it_sends_only_the_schema_fields_the_user_set(alice_client, conversation, upstream):
    send(
        alice_client,
        conversation,
        "Hi",
        model=CLAUDE,
        schema__top_k="40",
        schema__thinking='{"type": "enabled", "budget_tokens": 2048}',
        schema__stop_sequences="END\n\nSTOP",
        schema__system="",
        schema__metadata="",
    )

    (body,) = sent_bodies(upstream)
    assert body == {
        "model": CLAUDE,
        "messages": [{"role": "user", "content": "Hi"}],
        "top_k": 40.0,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "stop_sequences": ["END", "STOP"],
    }


def test_a_boolean_set_to_false_is_sent_as_false(alice_client, conversation, upstream):
    send(alice_client, conversation, "Hi", model="demo/thinker", schema__enable_thinking="false")

    (body,) = sent_bodies(upstream)
    assert body["enable_thinking"] is False
    assert "reasoning_effort" not in body


def test_the_saved_schema_fields_come_back_in_their_own_fields(alice_client, conversation):
    send(
        alice_client,
        conversation,
        "Hi",
        model=CLAUDE,
        schema__top_k="40",
        extra_params='{"x_custom": 1}',
    )

    conversation.refresh_from_db()
    assert conversation.extra_params == {"top_k": 40.0, "x_custom": 1}
    initial = ParametersForm.initial_for(conversation)
    assert initial["schema__top_k"] == 40.0
    assert json.loads(initial["extra_params"]) == {"x_custom": 1}


@pytest.mark.parametrize(
    ("model", "fields", "error"),
    [
        (CLAUDE, {"temperature": "1.5"}, "temperature: must be at most 1."),
        (CLAUDE, {"schema__top_k": "-3"}, "top_k: must be at least 0."),
        (
            CLAUDE,
            {"schema__thinking": '{"type": "enabled", "budget_tokens": 100}'},
            "thinking.budget_tokens: must be at least 1024.",
        ),
        (CLAUDE, {"schema__thinking": '{"type": "on"}'}, "thinking.budget_tokens: is required."),
        (GPT, {"top_p": "0.001"}, "top_p: must be at least 0.01."),
        (GPT, {"extra_params": '{"tool_choice": "sometimes"}'}, "tool_choice: must be one of"),
        (
            GPT,
            {"extra_params": '{"response_format": {"type": "xml"}}'},
            "response_format: must be an object with type",
        ),
        ("demo/echo", {"extra_params": '{"seed": 0}'}, "seed: must be at least 1."),
    ],
)
def test_a_value_outside_the_schema_is_refused_with_the_field_named(
    alice_client, conversation, upstream, model, fields, error
):
    response = send(alice_client, conversation, "Keep this text", model=model, **fields)

    assert response.status_code == 400
    page = response.content.decode()
    assert error.replace('"', "&quot;") in page
    assert "Keep this text" in page
    assert "Send anyway" in page
    assert upstream.chat_requests() == []
    assert not Message.objects.exists()


def test_send_anyway_sends_what_the_schema_refuses(alice_client, conversation, upstream):
    send(alice_client, conversation, "Hi", model=CLAUDE, temperature="1.5", send_anyway="on")

    (body,) = sent_bodies(upstream)
    assert body["temperature"] == 1.5
    assert Message.objects.get(role="assistant").status == Message.Status.COMPLETE


def test_a_string_tool_choice_is_sent_as_a_string(alice_client, conversation, upstream):
    send(alice_client, conversation, "Hi", model=GPT, schema__tool_choice="auto")

    (body,) = sent_bodies(upstream)
    assert body["tool_choice"] == "auto"


def test_broken_json_in_a_nested_field_is_refused_even_with_send_anyway(
    alice_client, conversation, upstream
):
    response = send(
        alice_client, conversation, "Hi", model=CLAUDE, schema__thinking="{nope", send_anyway="on"
    )

    assert response.status_code == 400
    assert "Not valid JSON" in response.content.decode()
    assert upstream.chat_requests() == []


def test_a_number_in_a_json_field_is_checked_against_the_schema_not_crashed_on(
    alice_client, conversation, upstream
):
    # Found by Hypothesis: "0.0" parses as a number, and the length check ran on it.
    response = send(alice_client, conversation, "Keep this", model=CLAUDE, schema__metadata="0.0")

    assert response.status_code == 400
    assert "metadata: must be an object." in response.content.decode()
    assert upstream.chat_requests() == []


def test_an_oversized_json_field_is_refused_with_its_length(alice_client, conversation, upstream):
    thinking = json.dumps({"type": "enabled", "budget_tokens": 2048, "pad": "x" * 17_000})
    response = send(
        alice_client, conversation, "Keep this", model=CLAUDE, schema__thinking=thinking
    )

    page = response.content.decode()
    assert response.status_code == 400
    assert "thinking: at most 16,384 bytes." in page and "Keep this" in page
    assert upstream.chat_requests() == []


@pytest.mark.parametrize(
    ("tool_choice", "error"),
    [
        ("[" * 5000 + "]" * 5000, "tool_choice: nests deeper than 16 levels."),
        ("[" * 20_000, "tool_choice: at most 16,384 bytes."),
        ("a" * 20_000, "tool_choice: at most 16,384 bytes."),
    ],
)
def test_a_field_that_also_takes_text_still_has_its_limits(tool_choice, error):
    # As a schema whose tool_choice the select cannot offer would have it (chat/tools_editor.py).
    field = schema_form.JsonField(label="tool_choice", accepts_string=True, required=False)

    with pytest.raises(django_forms.ValidationError) as refused:
        field.clean(tool_choice)

    assert refused.value.messages == [error]


def test_the_panel_endpoint_renders_the_new_models_fields_keeping_typed_values(
    alice_client, conversation, bob_client
):
    url = reverse("parameters_panel", args=[conversation.public_id])
    data = {"model": GPT, "temperature": "0.7", "schema__top_k": "40"}

    page = alice_client.post(url, data).content.decode()

    assert 'name="schema__frequency_penalty"' in page
    assert 'name="schema__thinking"' not in page
    assert 'value="0.7"' in page
    assert bob_client.post(url, data).status_code == 404


# --- The catalogue -------------------------------------------------------------


def models_requests(upstream):
    return [r for r in upstream.requests if r.path.startswith("/v1/models")]


def test_the_catalogue_is_fetched_once_with_pricing_and_cached(upstream):
    first = catalogue.catalogue_get()
    second = catalogue.catalogue_get()

    assert first.live and second.models == first.models
    (request,) = models_requests(upstream)
    assert "include=pricing%2Ccapabilities" in request.path
    claude = first.find("claude-sonnet-4-5")  # by alias
    assert claude["id"] == CLAUDE
    assert (claude["context_length"], claude["output_max"]) == (200000, 64000)
    assert Decimal(claude["pricing"]["input"]) == Decimal("0.000002")
    assert claude["docs_json"].endswith("/docs-json?model=anthropic%2Fclaude-sonnet-4.5")
    assert first.find("openai/dall-e-3") is None  # not a chat model


def test_a_due_catalogue_is_revalidated_with_its_etag_in_the_background(upstream, settings):
    catalogue.catalogue_get()
    settings.UPSTREAM_MODELS_CACHE_SECONDS = 0

    served = catalogue.catalogue_get()  # the copy it has, while the refresh runs
    catalogue.refresh_thread.join(5)

    assert served.live
    first, second = models_requests(upstream)
    assert "If-None-Match" not in first.headers
    assert second.headers["If-None-Match"] == served.etag
    assert catalogue.catalogue_refresh().models == served.models  # 304: same list kept


def test_a_changed_catalogue_replaces_the_cached_copy(upstream):
    catalogue.catalogue_get()
    upstream.extra_models = [
        {
            "id": "acme/new-model",
            "aliases": [],
            "type": "chat-completion",
            "info": {"name": "New", "developer": "Acme"},
            "tags": [],
        }
    ]

    refreshed = catalogue.catalogue_refresh()

    assert refreshed.find("acme/new-model") is not None


def test_an_unreachable_upstream_keeps_the_last_good_copy_and_the_page_says_so(
    alice_client, conversation, upstream
):
    good = catalogue.catalogue_get()
    upstream.models_status = 503

    kept = catalogue.catalogue_refresh()
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert kept.models == good.models and kept.stale
    assert "could not be refreshed; showing the copy from" in page
    assert "Claude Sonnet 4.5" in page


def test_without_any_copy_the_configured_defaults_are_offered(alice_client, conversation, settings):
    settings.UPSTREAM_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens there

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert "could not be loaded; showing the configured defaults" in page
    assert f'<option value="{CLAUDE}">' in page
    # The bundled schema still gives Claude its own panel.
    assert 'name="schema__thinking"' in page


def test_the_model_browser_groups_by_developer_with_context_output_and_price(
    alice_client, conversation
):
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert "<h3>Anthropic</h3>" in page and "<h3>DeepSeek</h3>" in page
    assert page.index("<h3>Anthropic</h3>") < page.index("<h3>Open AI</h3>")
    assert "200k context · 64k max output · $2.00 / $2.00 per 1M in / out" in page


def test_keys_the_schema_does_not_list_are_sent_but_flagged(alice_client, conversation, upstream):
    send(
        alice_client,
        conversation,
        "Hi",
        model=CLAUDE,
        stop="END",
        extra_params='{"enable_thinking": false}',
    )

    (body,) = sent_bodies(upstream)
    assert body["enable_thinking"] is False and body["stop"] == ["END"]
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "schema, sent as they are: <code>enable_thinking</code>, <code>stop</code>." in page
