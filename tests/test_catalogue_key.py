"""The model list is asked for with the key, and only the model list: OpenAI, LiteLLM and
vLLM (--api-key) list models only to a caller with the key, while the schema documents
come from links the catalogue names, which may point anywhere.

Against the demo upstream with `models_api_key` set: its GET /models answers 401 (an
OpenAI-style error body) to any other Authorization.
"""

import logging

import pytest

from chat import catalogue
from chat.demo_upstream import _route
from chat.forms import ParametersForm
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.django_db

CLAUDE = "anthropic/claude-sonnet-4.5"


def requests_to(upstream, route: str) -> list:
    return [request for request in upstream.requests if _route(request.path) == route]


def test_it_loads_the_catalogue_from_an_upstream_that_wants_the_key(upstream):
    upstream.models_api_key = TEST_API_KEY

    loaded = catalogue.catalogue_refresh()

    assert loaded.live and not loaded.error
    assert loaded.find(CLAUDE) is not None
    (request,) = requests_to(upstream, "/models")
    assert request.headers["Authorization"] == f"Bearer {TEST_API_KEY}"


def test_without_a_key_the_panel_falls_back_and_says_why(
    alice_client, conversation, upstream, settings, caplog
):
    settings.UPSTREAM_API_KEY = ""
    upstream.models_api_key = TEST_API_KEY
    caplog.set_level(logging.WARNING, logger="chat.catalogue")

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert "could not be loaded; showing the configured defaults" in page
    (request,) = requests_to(upstream, "/models")
    assert "Authorization" not in request.headers
    assert catalogue.catalogue_get().error == (
        "The upstream answered 401 (Unauthorized): Incorrect API key provided. You must send "
        "your API key in an Authorization header (Bearer). Check UPSTREAM_API_KEY in your "
        ".env file."
    )
    assert any(
        record.getMessage().startswith("Model list unavailable: The upstream answered 401")
        for record in caplog.records
    )


def test_a_wrong_key_is_refused_like_no_key(upstream, settings):
    settings.UPSTREAM_API_KEY = "sk-not-the-one"
    upstream.models_api_key = TEST_API_KEY

    loaded = catalogue.catalogue_refresh()

    assert not loaded.live and "401" in loaded.error


def test_the_schema_documents_are_fetched_without_the_key(upstream):
    upstream.models_api_key = TEST_API_KEY

    form = ParametersForm(initial={"model": CLAUDE})

    assert form.schema.source == "upstream"  # the docsJson link was followed
    (listing,) = requests_to(upstream, "/models")
    assert listing.headers["Authorization"] == f"Bearer {TEST_API_KEY}"
    documents = requests_to(upstream, "/docs-json")
    assert documents
    assert all(name.lower() != "authorization" for request in documents for name in request.headers)
