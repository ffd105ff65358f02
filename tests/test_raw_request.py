"""Raw request mode: the whole body as written, recorded like any call, mapped back to the panel."""

import json

import pytest
from django.urls import reverse

from chat.models import ApiCall, Message
from tests.helpers import form_data, send, sent_bodies

pytestmark = pytest.mark.django_db


RAW = {
    "model": "demo/thinker",
    "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Raw hello"},
    ],
    "temperature": 0.3,
    "top_k": 7,
    "x_vendor_flag": {"deep": [1, 2]},
}


def send_raw(client, conversation, body, **overrides):
    text = body if isinstance(body, str) else json.dumps(body)
    return send(client, conversation, "", use_raw="on", raw_body=text, **overrides)


def test_the_raw_body_is_sent_as_is_and_recorded(alice_client, conversation, upstream):
    response = send_raw(alice_client, conversation, RAW)

    assert response.status_code == 302
    (body,) = sent_bodies(upstream)
    assert body == RAW
    call = ApiCall.objects.get()
    assert json.loads(call.request_body) == RAW and call.model == "demo/thinker"
    user = Message.objects.get(role="user")
    assert user.content == "Raw hello" and json.loads(user.raw_body) == RAW
    assert Message.objects.get(role="assistant").status == Message.Status.COMPLETE


def test_switching_back_keeps_what_maps(alice_client, conversation):
    send_raw(alice_client, conversation, RAW)

    conversation.refresh_from_db()
    assert conversation.model == "demo/thinker"
    assert conversation.system_prompt == "Answer in French."
    assert conversation.temperature == 0.3
    assert conversation.extra_params == {"top_k": 7, "x_vendor_flag": {"deep": [1, 2]}}
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert 'value="0.3"' in page and "x_vendor_flag" in page


def test_the_raw_editor_is_prefilled_from_the_form(alice_client, conversation):
    conversation.temperature = 0.6
    conversation.save()

    plain = alice_client.get(conversation.get_absolute_url())
    form = alice_client.get(conversation.get_absolute_url() + "?raw=1").context["form"]

    assert 'href="?raw=1#raw-mode"' in plain.content.decode()  # not drawn until asked for
    assert not plain.context["form"]["raw_body"].value()

    prefilled = json.loads(form["raw_body"].value())
    assert prefilled == {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": ""}],
        "temperature": 0.6,
    }


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{broken", "Not valid JSON"),
        ("[]", "must be a JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, "needs a &quot;model&quot; string"),
        ({"model": "m", "messages": []}, "non-empty &quot;messages&quot; array"),
        ({"model": "m", "messages": ["hi"]}, "messages[0] must be an object whose role"),
        ({"model": "m", "messages": [{"role": "user", "content": 7}]}, "must be a string, a list"),
    ],
)
def test_a_bad_raw_body_is_refused_and_kept(alice_client, conversation, upstream, raw, error):
    response = send_raw(alice_client, conversation, raw)

    assert response.status_code == 400
    page = response.content.decode()
    assert error in page
    assert upstream.chat_requests() == []
    assert not Message.objects.exists()


def test_a_failed_raw_request_is_retried_with_the_same_body(alice_client, conversation, upstream):
    send_raw(alice_client, conversation, {**RAW, "demo_fault": "status=400"})
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.FAILED

    alice_client.post(reverse("reply_retry", args=[conversation.public_id, reply.public_id]))

    first, second = sent_bodies(upstream)
    assert first == second == {**RAW, "demo_fault": "status=400"}


def test_copy_into_the_form_maps_the_raw_body_without_sending(alice_client, conversation, upstream):
    data = form_data("", use_raw="on", raw_body=json.dumps(RAW))
    response = alice_client.post(reverse("parameters_save", args=[conversation.public_id]), data)

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.model, conversation.temperature) == ("demo/thinker", 0.3)
    assert conversation.extra_params == {"top_k": 7, "x_vendor_flag": {"deep": [1, 2]}}
    assert upstream.chat_requests() == [] and not Message.objects.exists()


def test_a_streamed_raw_body_is_recorded_as_a_stream_on_the_form_path(
    alice_client, conversation, upstream
):
    text = json.dumps({**RAW, "stream": True}, indent=1)

    send_raw(alice_client, conversation, text)

    (received,) = upstream.chat_requests()
    assert received.body == text.encode()
    call = ApiCall.objects.get()
    assert call.is_stream and call.stream_events[-1]["data"] == "[DONE]"
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.COMPLETE and reply.content


def test_a_streamed_raw_body_streams_to_the_browser(alice_client, conversation, upstream):
    from tests.test_streaming import read_all

    text = json.dumps({**RAW, "stream": True})
    url = reverse("message_stream", args=[conversation.public_id])
    events = read_all(alice_client.post(url, form_data("", use_raw="on", raw_body=text)))

    assert events[0][0] == "start" and events[-1][0] == "done"
    assert any(kind == "delta" for kind, _ in events)
    assert upstream.chat_requests()[0].body == text.encode()


def test_an_unstreamed_raw_body_is_left_to_the_form_path(alice_client, conversation, upstream):
    url = reverse("message_stream", args=[conversation.public_id])

    response = alice_client.post(url, form_data("", use_raw="on", raw_body=json.dumps(RAW)))

    assert response.status_code == 400 and not upstream.chat_requests()
