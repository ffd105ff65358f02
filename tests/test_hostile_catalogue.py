"""A hostile upstream catalogue and hostile schema documents: bounded, validated, never a 500.

The catalogue (`GET /models`) and each model's schema document (`info.docsJson`) come
from the upstream and are untrusted input. The demo upstream's catalogue faults make them
hostile (`DemoUpstream.catalogue_fault`); every case is tried through real pages: the
conversation page, the panel endpoint and a send.
"""

import json
import logging
import time
from decimal import Decimal

import hypothesis
import pytest
from django.core.cache import cache
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from chat import catalogue, client
from chat.models import Message
from tests.helpers import send, sent_bodies

pytestmark = pytest.mark.django_db

ECHO = "demo/echo"
CLAUDE = "anthropic/claude-sonnet-4.5"


def page_of(client, conversation) -> str:
    response = client.get(conversation.get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def panel_of(client, conversation, model: str = ECHO, **data) -> str:
    url = reverse("parameters_panel", args=[conversation.public_id])
    response = client.post(url, {"model": model, **data})
    assert response.status_code == 200
    return response.content.decode()


def schema_requests(upstream) -> list:
    return [r for r in upstream.requests if r.path.startswith("/docs-json")]


# --- Catalogue entries of the wrong shape ---------------------------------------


def test_it_skips_bad_catalogue_entries_logs_them_and_keeps_the_good_one(upstream, caplog):
    upstream.catalogue_fault = "bad_entries"

    with caplog.at_level(logging.WARNING, logger="chat.client"):
        fetched = catalogue.catalogue_refresh()

    assert fetched.live and not fetched.error
    assert [model["id"] for model in fetched.models] == [ECHO]
    assert fetched.find("echo")["id"] == ECHO  # its alias kept
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 7  # list type, NaN price, int aliases, surrogate, NUL, long id, deep


def test_a_conversation_page_answers_with_a_bad_catalogue_and_offers_the_good_model(
    alice_client, conversation, upstream
):
    upstream.catalogue_fault = "bad_entries"

    page = page_of(alice_client, conversation)

    assert f'<option value="{ECHO}">' in page
    assert "bad/" not in page
    assert "Browse models (1)" in page


def test_the_panel_answers_with_a_bad_catalogue(alice_client, conversation, upstream):
    upstream.catalogue_fault = "bad_entries"

    page = panel_of(alice_client, conversation, model="bad/nan-price")

    assert 'name="model"' in page and "bad/list-type" not in page


def test_a_send_answers_with_a_bad_catalogue_and_gets_its_reply(
    alice_client, conversation, upstream
):
    upstream.catalogue_fault = "bad_entries"

    # No cost reported: the estimate would come from the catalogue's (NaN) price.
    extra = '{"demo_fault": "no_cost"}'
    response = send(alice_client, conversation, "Hello", model="bad/nan-price", extra_params=extra)

    assert response.status_code == 302
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.COMPLETE
    assert reply.calls.get().usd_spent is None  # the entry was skipped: no price, no estimate


def test_a_catalogue_too_deep_to_read_keeps_the_last_good_copy(
    alice_client, conversation, upstream
):
    good = catalogue.catalogue_get()
    upstream.catalogue_fault = "deep=100000"

    kept = catalogue.catalogue_refresh()
    page = page_of(alice_client, conversation)

    assert kept.models == good.models and kept.stale
    assert "nests too deeply" in kept.error
    assert "could not be refreshed; showing the copy from" in page


def test_a_catalogue_too_deep_to_read_with_no_copy_offers_the_defaults(
    alice_client, conversation, upstream
):
    upstream.catalogue_fault = "deep=100000"

    page = page_of(alice_client, conversation)

    assert "could not be loaded; showing the configured defaults" in page
    assert send(alice_client, conversation, "Hello").status_code == 302


# --- Size -----------------------------------------------------------------------


def test_it_keeps_at_most_the_configured_number_of_models_and_logs_the_rest(
    upstream, settings, caplog
):
    settings.UPSTREAM_MAX_MODELS = 100
    upstream.catalogue_fault = "many=150"

    with caplog.at_level(logging.WARNING, logger="chat.client"):
        fetched = catalogue.catalogue_refresh()

    assert len(fetched.models) == 100 and fetched.live
    assert fetched.find(CLAUDE) is not None  # the upstream's order: the usual models first
    assert any("55 more were dropped" in r.getMessage() for r in caplog.records)


def test_a_catalogue_past_the_byte_limit_keeps_the_last_good_copy(
    alice_client, conversation, upstream, settings
):
    good = catalogue.catalogue_get()
    settings.UPSTREAM_MAX_CATALOGUE_BYTES = 50_000
    upstream.catalogue_fault = "many=1000"

    kept = catalogue.catalogue_refresh()

    assert kept.models == good.models and kept.stale
    assert "limit" in kept.error
    assert "could not be refreshed" in page_of(alice_client, conversation)


def test_a_hundred_thousand_models_leave_the_conversation_page_small(
    alice_client, conversation, upstream, settings
):
    # Past the byte limit the catalogue is refused whole (the page then offers the
    # defaults); raise it, and the time allowed for its 50 MB, to reach the model cap.
    settings.UPSTREAM_MAX_CATALOGUE_BYTES = 64 * 1024 * 1024
    settings.UPSTREAM_FETCH_SECONDS = 60
    upstream.catalogue_fault = "many=100000"

    page = page_of(alice_client, conversation)

    assert "Browse models (1000)" in page
    assert len(page.encode()) < 1_500_000


# --- Schema documents of the wrong shape ----------------------------------------


def test_a_schema_with_values_of_the_wrong_type_gives_the_fields_it_can_read(
    alice_client, conversation, upstream
):
    upstream.catalogue_fault = "bad_schema"

    page = page_of(alice_client, conversation)

    assert 'name="schema__enable_thinking"' in page  # a well-formed property
    assert 'name="schema__reasoning_effort"' in page  # enum: 7 dropped: a text field
    assert 'name="schema__seed"' in page  # type ["integer", "null"]: an integer field
    assert "Range x" not in page and "At least x" not in page
    assert "could not be read" in page  # the note says the schema was not all understood


def test_the_panel_answers_for_a_schema_with_values_of_the_wrong_type(
    alice_client, conversation, upstream
):
    upstream.catalogue_fault = "bad_schema"

    page = panel_of(alice_client, conversation, schema__seed="3")

    assert 'name="schema__seed"' in page


def test_a_send_is_checked_against_what_could_be_read_of_a_bad_schema(
    alice_client, conversation, upstream
):
    upstream.catalogue_fault = "bad_schema"

    response = send(
        alice_client,
        conversation,
        "Hello",
        schema__seed="3",
        schema__top_k="5",
        schema__response_format='{"type": "text"}',
        schema__reasoning_effort="medium",
    )

    assert response.status_code == 302
    (body,) = sent_bodies(upstream)
    assert body["seed"] == 3 and body["reasoning_effort"] == "medium"


# --- A schema document sent a byte at a time --------------------------------------


def test_a_schema_sent_a_byte_at_a_time_holds_a_page_no_longer_than_the_fetch_bound(
    alice_client, conversation, upstream, settings
):
    settings.UPSTREAM_FETCH_SECONDS = 1.0
    catalogue.catalogue_get()
    upstream.catalogue_fault = "slow_schema"

    started = time.monotonic()
    page = page_of(alice_client, conversation)
    first = time.monotonic() - started
    started = time.monotonic()
    page_of(alice_client, conversation)
    second = time.monotonic() - started

    assert first < 2.5 and second < 1.0
    assert len(schema_requests(upstream)) == 1  # the failure is cached for a while
    assert "schema could not be loaded" in page
    assert "took too long" in page
    assert "No schema is known for this model" in page  # the generic panel


def test_a_slow_schema_falls_back_to_the_bundled_copy_with_a_note(
    alice_client, conversation, upstream, settings
):
    settings.UPSTREAM_FETCH_SECONDS = 1.0
    catalogue.catalogue_get()
    upstream.catalogue_fault = "slow_schema"

    started = time.monotonic()
    page = panel_of(alice_client, conversation, model=CLAUDE)

    assert time.monotonic() - started < 2.5
    assert 'name="schema__thinking"' in page  # Claude's bundled document
    assert "the copy bundled with the app" in page
    assert "schema could not be loaded" in page


# --- An expired schema and a slow or failing upstream ------------------------------


def expire_the_cached_copies(settings) -> None:
    """The catalogue and the schemas are due for a refresh (by the clock, as in use)."""
    settings.UPSTREAM_MODELS_CACHE_SECONDS = 1
    time.sleep(1.1)


def join_refreshes() -> None:
    for thread in catalogue.refresh_threads:
        thread.join(10)


def timed(call, *args, **kwargs):
    started = time.monotonic()
    result = call(*args, **kwargs)
    return result, time.monotonic() - started


def test_an_expired_schema_is_served_from_its_copy_while_a_slow_upstream_is_asked_behind(
    alice_client, conversation, upstream, settings
):
    settings.UPSTREAM_MODELS_CACHE_SECONDS = 1
    settings.UPSTREAM_FETCH_SECONDS = 2.0
    page_of(alice_client, conversation)  # the schema fetched and cached
    expire_the_cached_copies(settings)
    upstream.catalogue_fault = "slow_schema"

    page, page_seconds = timed(page_of, alice_client, conversation)
    panel, panel_seconds = timed(panel_of, alice_client, conversation)
    join_refreshes()
    refreshes = len(schema_requests(upstream)) - 1
    after = page_of(alice_client, conversation)

    assert page_seconds < 1.0 and panel_seconds < 1.0
    for shown in (page, panel, after):
        assert 'name="schema__reasoning_effort"' in shown  # the cached copy's fields
    assert "could not be loaded" not in page
    assert refreshes == 1  # one at a time, though two requests found the copy due
    assert "could not be refreshed from the upstream" in after
    assert "took too long" in after


def test_a_send_with_an_expired_schema_does_not_wait_on_a_slow_upstream(
    alice_client, conversation, upstream, settings
):
    settings.UPSTREAM_MODELS_CACHE_SECONDS = 1
    settings.UPSTREAM_FETCH_SECONDS = 2.0
    page_of(alice_client, conversation)
    expire_the_cached_copies(settings)
    upstream.catalogue_fault = "slow_schema"

    response, seconds = timed(
        send, alice_client, conversation, "Hello", schema__seed="3", schema__top_p="0.5"
    )
    join_refreshes()

    assert response.status_code == 302 and seconds < 1.0
    (body,) = sent_bodies(upstream)
    assert body["seed"] == 3  # read through the cached schema: an integer field


def test_a_failed_schema_refresh_keeps_the_last_good_copy_and_says_so(
    alice_client, conversation, upstream, settings
):
    settings.UPSTREAM_MODELS_CACHE_SECONDS = 1
    page_of(alice_client, conversation)
    expire_the_cached_copies(settings)
    upstream.schema_documents = {ECHO: {"openapi": "3.0.0", "paths": {}}}

    page_of(alice_client, conversation)  # finds the copy due: the refresh starts
    join_refreshes()
    page = page_of(alice_client, conversation)
    panel = panel_of(alice_client, conversation)

    for shown in (page, panel):
        assert 'name="schema__reasoning_effort"' in shown
        assert "could not be refreshed from the upstream" in shown
        assert "no chat-completions request body" in shown
    assert "No schema is known for this model" not in page


def test_a_schema_that_reads_again_after_a_failed_refresh_drops_the_note(
    alice_client, conversation, upstream, settings
):
    settings.UPSTREAM_MODELS_CACHE_SECONDS = 1
    page_of(alice_client, conversation)
    expire_the_cached_copies(settings)
    upstream.schema_documents = {ECHO: {"openapi": "3.0.0", "paths": {}}}
    page_of(alice_client, conversation)
    join_refreshes()
    upstream.schema_documents = {}
    expire_the_cached_copies(settings)

    page_of(alice_client, conversation)
    join_refreshes()

    assert "could not be refreshed" not in page_of(alice_client, conversation)


def test_the_demo_upstream_takes_a_catalogue_fault_from_another_process(upstream):
    import urllib.error
    import urllib.request

    def post(fault):
        request = urllib.request.Request(
            f"{upstream.base_url}/_demo/catalogue_fault",
            data=json.dumps({"fault": fault}).encode(),
            method="POST",
        )
        return urllib.request.urlopen(request, timeout=5)

    assert post("many=3,bad_schema").status == 200
    assert upstream.catalogue_fault == "many=3,bad_schema"
    with pytest.raises(urllib.error.HTTPError) as refused:
        post("many=lots")
    assert refused.value.code == 400
    assert upstream.catalogue_fault == "many=3,bad_schema"


# --- Generated catalogues and schema documents ------------------------------------

PROPERTY = hypothesis.settings(
    max_examples=30,
    deadline=None,  # the machine is shared; speed is measured by bench/, not here
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
GOOD_ENTRY = {"id": "good/model", "type": "chat-completion", "info": {"name": "Good"}}


def nested(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\x00b", "x" * 300, "NaN", "", " ", "\u202e", "<b>"]),
)
hostile_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "Infinity", "-1", "1e999", "0.000002", "sNaN", True]),
)
json_values = st.recursive(
    st.none() | st.booleans() | hostile_number | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
# Deep, but within what the JSON parser reads (deeper documents are refused whole).
any_value = st.one_of(json_values, st.builds(nested, st.just(3_000)))
pricing = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["fixed", "variable", 5]),
        "currency": st.one_of(st.just("USD"), any_value),
        "units": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "unit": st.sampled_from(["input_tokens", "output_tokens", 5, None]),
                        "price": st.one_of(hostile_number, any_value),
                        "per": st.one_of(st.just(1_000_000), hostile_number),
                    }
                ),
                max_size=3,
            ),
            any_value,
        ),
    }
)
info = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(hostile_text, any_value),
        "developer": st.one_of(hostile_text, any_value),
        "contextLength": st.one_of(hostile_number, any_value),
        "outputMax": hostile_number,
        "docsJson": st.one_of(hostile_text, any_value),
    },
)
catalogue_entry = st.one_of(
    any_value,
    st.fixed_dictionaries(
        {"id": st.one_of(hostile_text, any_value)},
        optional={
            "type": st.one_of(st.sampled_from(["chat-completion", "chat", "image"]), any_value),
            "aliases": st.one_of(st.lists(hostile_text, max_size=3), any_value),
            "info": st.one_of(info, any_value),
            "pricing": st.one_of(pricing, any_value),
            "capabilities": st.one_of(st.lists(hostile_text, max_size=3), any_value),
            "owned_by": st.one_of(hostile_text, any_value),
        },
    ),
)


def clean_text(text) -> bool:
    return isinstance(text, str) and len(text) <= 200 and not client.UNSAFE_TEXT.search(text)


@PROPERTY
@given(entries=st.lists(catalogue_entry, max_size=6), with_good=st.booleans())
def test_generated_catalogue_entries_never_break_a_page_and_good_entries_are_kept(
    alice_client, conversation, upstream, entries, with_good
):
    cache.clear()
    upstream.catalogue_entries = None
    good = catalogue.catalogue_get()
    upstream.catalogue_entries = [*entries, GOOD_ENTRY] if with_good else entries

    fetched = catalogue.catalogue_refresh()

    if with_good:
        assert fetched.live and not fetched.error and fetched.find("good/model")
    assert not fetched.error or fetched.models == good.models  # the last good copy kept
    for model in fetched.models:
        assert clean_text(model["id"]) and clean_text(model["name"])
        assert all(clean_text(alias) for alias in model["aliases"])
        for rate in (model["pricing"] or {}).values():
            assert 0 <= Decimal(rate) <= 1
    page_of(alice_client, conversation)
    panel_of(alice_client, conversation, model="good/model")


schema_keyword_values = {
    "type": st.one_of(
        st.sampled_from(["string", "number", "integer", "boolean", "array", "object"]),
        st.lists(st.sampled_from(["string", "integer", "null"]), max_size=3),
        any_value,
    ),
    "enum": st.one_of(
        st.lists(json_values, max_size=4), any_value, st.builds(lambda: list(range(5_000)))
    ),
    "minimum": st.one_of(hostile_number, any_value),
    "maximum": st.one_of(hostile_number, any_value),
    "maxLength": any_value,
    "maxItems": any_value,
    "required": st.one_of(st.lists(hostile_text, max_size=3), any_value),
    "description": st.one_of(hostile_text, any_value, st.builds(lambda: "d" * 100_000)),
    "default": any_value,
    "nullable": any_value,
    "additionalProperties": any_value,
    "$ref": st.sampled_from(["#/components/schemas/Loop", "#/components/schemas/Fan0", "#/x", 5]),
}
schema_specs = st.recursive(
    st.fixed_dictionaries({}, optional=schema_keyword_values) | any_value,
    lambda inner: st.fixed_dictionaries(
        {},
        optional={
            **schema_keyword_values,
            "properties": st.one_of(st.dictionaries(hostile_text, inner, max_size=3), any_value),
            "items": inner,
            "anyOf": st.lists(inner, max_size=3),
        },
    ),
    max_leaves=6,
)


def schema_document(properties, required):
    # A $ref loop, and a fan-out that would expand to 20 ** 6 schemas if followed blindly.
    fan = {
        f"Fan{level}": {"anyOf": [{"$ref": f"#/components/schemas/Fan{level + 1}"}] * 20}
        for level in range(6)
    }
    body = {"type": "object", "required": required, "properties": properties}
    return {
        "openapi": "3.0.0",
        "components": {
            "schemas": {"Loop": {"properties": {"a": {"$ref": "#/components/schemas/Loop"}}}} | fan
        },
        "paths": {
            "/v1/chat/completions": {
                "post": {"requestBody": {"content": {"application/json": {"schema": body}}}}
            }
        },
    }


@PROPERTY
@given(
    properties=st.dictionaries(hostile_text, schema_specs, max_size=4),
    required=st.one_of(st.lists(hostile_text, max_size=2), any_value),
    # Not "1e999" (Infinity) or NaN: JSON a user types is finding 6's, tested with its fix.
    typed=st.lists(st.sampled_from(["1", "-1", "true", "x", '{"a": 1}', "", "[1]"]), max_size=4),
)
def test_generated_schema_documents_never_break_a_page_or_a_send(
    alice_client, conversation, upstream, properties, required, typed
):
    cache.clear()
    upstream.schema_documents = {ECHO: schema_document(properties, required)}

    page_of(alice_client, conversation)
    panel_of(alice_client, conversation)
    names = [name for name in properties if clean_text(name)]  # the client cannot post others
    fields = {f"schema__{name}": value for name, value in zip(names, typed, strict=False)}
    response = send(alice_client, conversation, "Hello", **fields)

    assert response.status_code in {302, 400}
