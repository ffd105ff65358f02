"""The inspector shows each body exactly as sent or received, with a formatted view
labelled as not the bytes: in the conversation page, the call page, an older reply's
record and a share page, the same partial (chat/_call_record.html)."""

import html

import pytest
from django.test import Client
from django.urls import reverse

from chat import formatting
from chat.models import ApiCall
from tests.helpers import send
from tests.test_hostile_rendering import share_it

# Spacing and a number form that re-encoding would change ("5e-1" becomes 0.5).
ODD_REQUEST = '{"model":"x",  "temperature": 5e-1}'
ODD_RESPONSE = '{"id" :"chatcmpl-1","choices":[ ] ,\n "usage":{}}'

PAGES = ["conversation", "call", "record", "share"]


@pytest.fixture
def odd_call(alice_client, conversation) -> ApiCall:
    """A reply whose stored call has bodies that no JSON encoder would write."""
    send(alice_client, conversation, "Hello")
    call = ApiCall.objects.get()
    ApiCall.objects.filter(pk=call.pk).update(request_body=ODD_REQUEST, response_body=ODD_RESPONSE)
    return call


def page_of(name: str, client: Client, conversation, call: ApiCall) -> str:
    if name == "share":
        url, client = share_it(client, conversation).get_absolute_url(), Client()
    else:
        url = {
            "conversation": conversation.get_absolute_url(),
            "call": reverse("call_detail", args=[call.public_id]),
            "record": reverse("call_record", args=[call.public_id]),
        }[name]
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def exact_pre(text: str) -> str:
    return f'<pre class="raw">{html.escape(text)}</pre>'


@pytest.mark.django_db
@pytest.mark.parametrize("name", PAGES)
def test_it_shows_the_request_body_byte_for_byte_as_the_first_view(
    name, alice_client, conversation, odd_call
):
    page = page_of(name, alice_client, conversation, odd_call)

    assert "<summary>Body, exactly as sent</summary>" in page
    assert exact_pre(ODD_REQUEST) in page
    formatted = page.index("<summary>Formatted (not the bytes sent)</summary>")
    assert page.index(exact_pre(ODD_REQUEST)) < formatted
    # The formatted view is the re-encoding, and only there.
    assert page.index("&quot;temperature&quot;: 0.5") > formatted


@pytest.mark.django_db
@pytest.mark.parametrize("name", PAGES)
def test_it_shows_the_response_body_byte_for_byte_with_a_labelled_formatted_view(
    name, alice_client, conversation, odd_call
):
    page = page_of(name, alice_client, conversation, odd_call)

    assert "<summary>Body, exactly as received</summary>" in page
    assert exact_pre(ODD_RESPONSE) in page
    formatted = page.index("<summary>Formatted (not the bytes received)</summary>")
    assert page.index("&quot;choices&quot;: []") > formatted  # only the formatted view


@pytest.mark.django_db
def test_it_shows_the_request_exactly_as_the_upstream_received_it(
    alice_client, conversation, upstream
):
    send(alice_client, conversation, "Hello  there,\tspaced")
    (received,) = upstream.chat_requests()

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert exact_pre(received.body.decode()) in page


@pytest.mark.django_db
def test_it_keeps_the_spacing_of_each_streamed_event(alice_client, conversation):
    send(alice_client, conversation, "Hello")
    data = '{"choices":[{"delta":{"content":"Hi"}}],   "odd" : 1}'
    ApiCall.objects.update(
        stream_events=[{"at_ms": 7, "data": data}, {"at_ms": 9, "data": "[DONE]"}],
        assembled_response={"choices": [{"message": {"content": "Hi"}}]},
    )

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert "2 server-sent events, as received" in page
    assert f"<tr><td>+7 ms</td><td><code>{html.escape(data)}</code></td></tr>" in page
    assert (
        "<summary>Formatted: the chunks assembled into one response (not the bytes received)"
        in page
    )


@pytest.mark.django_db
def test_it_shows_a_long_body_in_part_exactly_with_the_rest_a_download_away(
    alice_client, conversation, odd_call, settings
):
    settings.MAX_SHOWN_CHARS = 20
    url = reverse("call_download", args=[odd_call.public_id, "request"])

    page = alice_client.get(reverse("call_detail", args=[odd_call.public_id])).content.decode()

    assert exact_pre(ODD_REQUEST[:20]) in page
    assert f"Showing the first 20 of {len(ODD_REQUEST)} characters." in page
    assert f'<a href="{url}" download>Download the whole body</a>' in page
    download = alice_client.get(url)
    assert download.content.decode() == ODD_REQUEST


@pytest.mark.django_db
def test_it_says_why_a_body_that_is_not_json_has_no_formatted_view(
    alice_client, conversation, odd_call
):
    ApiCall.objects.update(response_body="<html>Bad gateway</html>")

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert exact_pre("<html>Bad gateway</html>") in page
    assert page.count("Bad gateway") == 1  # not repeated as its "formatted" view
    assert "No formatted view: not JSON." in page


def test_it_formats_a_body_within_the_limits_and_not_past_them(settings):
    settings.MAX_FORMAT_CHARS, settings.MAX_FORMAT_DEPTH = 100, 3

    assert formatting.formatted_body('{"a":[1]}') == (
        '<pre class="json">{\n  &quot;a&quot;: [\n    1\n  ]\n}</pre>'
    )
    assert "too deep to format (more than 3 levels)" in formatting.formatted_body("[[[[]]]]")
    assert "too large to format" in formatting.formatted_body(f'"{"x" * 200}"')
    assert "too large to format" in formatting.formatted_body("[" + "1," * 40 + "1]")
    assert "the body is empty" in formatting.formatted_body("")


def test_the_shown_exact_text_is_escaped_and_cut_at_the_limit():
    assert formatting.shown_exact('<b a="1">  x</b>', 9) == "&lt;b a=&quot;1&quot;&gt;"
    assert formatting.shown_exact("x" * 50, 5) == "xxxxx"
