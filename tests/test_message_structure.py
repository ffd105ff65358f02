"""Messages as the API carries them: parts and files, every role, raw bodies as typed."""

import base64
import hashlib
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat.attachments import attachment_store, sniff
from chat.models import ApiCall, Attachment, Message
from tests.helpers import PDF_BYTES, form_data, png_bytes, send, sent_bodies

pytestmark = pytest.mark.django_db

CLAUDE = "anthropic/claude-sonnet-4.5"


def upload(name: str, data: bytes, content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def send_files(client, conversation, content="What is in it?", files=(), **overrides):
    url = reverse("message_send", args=[conversation.public_id])
    return client.post(url, {**form_data(content, **overrides), "attachments": list(files)})


def last_user_content(body):
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def test_an_attached_image_goes_as_an_image_url_part_and_arrives_intact(
    alice_client, conversation, upstream
):
    image = png_bytes(4, 3)

    response = send_files(alice_client, conversation, files=[upload("cat.png", image)])

    assert response.status_code == 302
    (body,) = sent_bodies(upstream)
    text, part = last_user_content(body)
    assert text == {"type": "text", "text": "What is in it?"}
    assert part["type"] == "image_url"
    assert part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(image).decode()
    reply = Message.objects.get(role="assistant")
    digest = hashlib.sha256(image).hexdigest()[:12]
    assert f"image/png {len(image)} bytes 4x3 sha256 {digest}" in reply.content


def test_a_file_is_stored_once_however_many_turns_resend_it(alice_client, conversation, upstream):
    image = png_bytes(64, 64, seed=7)
    send_files(alice_client, conversation, files=[upload("big.png", image)])
    for turn in range(3):
        send(alice_client, conversation, f"And now {turn}?")

    bodies = sent_bodies(upstream)
    encoded = base64.b64encode(image).decode()
    # Every later turn sends the image again, in its message.
    assert all(json.dumps(body).count(encoded) == 1 for body in bodies)
    assert Attachment.objects.count() == 1
    for call, received in zip(
        ApiCall.objects.order_by("created"), upstream.chat_requests(), strict=True
    ):
        assert encoded not in call.request_body  # stored once, on the attachment
        download = alice_client.get(reverse("call_download", args=[call.public_id, "request"]))
        assert download.content == received.body  # yet the bytes sent, exactly


def test_claude_gets_source_blocks_and_the_system_prompt_as_a_field(
    alice_client, conversation, upstream
):
    conversation.model = CLAUDE
    conversation.save()
    image, pdf = png_bytes(2, 2), PDF_BYTES

    send_files(
        alice_client,
        conversation,
        files=[upload("a.png", image), upload("doc.pdf", pdf)],
        model=CLAUDE,
        system_prompt="Be brief.",
    )

    (body,) = sent_bodies(upstream)
    assert body["system"] == "Be brief."
    assert all(message["role"] != "system" for message in body["messages"])
    _, image_part, pdf_part = last_user_content(body)
    assert image_part == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(image).decode(),
        },
    }
    assert pdf_part["type"] == "document"
    assert pdf_part["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(pdf_part["source"]["data"]) == pdf


def test_the_claude_panel_shows_the_system_prompt_once(alice_client, conversation):
    conversation.model = CLAUDE
    conversation.save()

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert "System prompt" in page
    assert 'name="schema__system"' not in page


def test_a_pdf_goes_to_openai_models_as_a_file_part(alice_client, conversation, upstream):
    send_files(alice_client, conversation, files=[upload("report.pdf", PDF_BYTES)])

    (body,) = sent_bodies(upstream)
    _, part = last_user_content(body)
    assert part["type"] == "file"
    assert part["file"]["filename"] == "report.pdf"
    assert part["file"]["file_data"].startswith("data:application/pdf;base64,")


def test_a_file_of_another_type_is_refused_and_the_text_kept(alice_client, conversation, upstream):
    response = send_files(
        alice_client,
        conversation,
        "Keep this text",
        files=[upload("notes.png", b"<svg onload=alert(1)>", "image/png")],
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "notes.png is not a PNG, JPEG, WebP, GIF or PDF file." in page
    assert "Keep this text" in page
    assert not upstream.chat_requests() and not Message.objects.exists()


def test_a_file_over_the_limit_is_refused_naming_it(alice_client, conversation, settings):
    settings.MAX_ATTACHMENT_BYTES = 100
    response = send_files(alice_client, conversation, files=[upload("big.png", png_bytes(40, 40))])

    assert response.status_code == 400
    assert "big.png is" in response.content.decode()
    assert "a file may be at most 100" in response.content.decode()


def test_too_many_files_are_refused(alice_client, conversation, settings):
    settings.MAX_ATTACHMENTS_PER_MESSAGE = 1
    files = [upload(f"{n}.png", png_bytes(2, 2, seed=n)) for n in range(2)]

    response = send_files(alice_client, conversation, files=files)

    assert response.status_code == 400
    assert "Attach at most 1 files to one message" in response.content.decode()


def test_attachments_show_as_thumbnails_served_to_their_owner_only(
    alice_client, bob_client, client, conversation
):
    send_files(alice_client, conversation, files=[upload("cat.png", png_bytes(5, 4))])
    attachment = Attachment.objects.get()
    url = reverse("attachment_file", args=[attachment.public_id])

    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert f'src="{url}"' in page and 'width="5" height="4"' in page

    response = alice_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content == bytes(attachment.data)
    assert "sandbox" in response["Content-Security-Policy"]
    assert bob_client.get(url).status_code == 404
    assert client.get(url).status_code == 302  # to the log-in page


def test_add_without_sending_adds_few_shot_turns_and_calls_nothing(
    alice_client, conversation, upstream
):
    send(alice_client, conversation, "2+2?", add_only="on")
    send(alice_client, conversation, "4", role="assistant", add_only="on")
    send(alice_client, conversation, "3+3?")

    (body,) = sent_bodies(upstream)
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "2+2?"),
        ("assistant", "4"),
        ("user", "3+3?"),
    ]
    few_shot = Message.objects.get(content="4")
    assert few_shot.written and not few_shot.calls.exists()
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "written by you" in page


def test_an_assistant_prefill_is_sent_last_for_the_model_to_continue(
    alice_client, conversation, upstream
):
    send(alice_client, conversation, "Name a colour.", add_only="on")
    send(alice_client, conversation, "The colour is", role="assistant")

    (body,) = sent_bodies(upstream)
    assert body["messages"][-1] == {"role": "assistant", "content": "The colour is"}
    reply = Message.objects.filter(written=False).get()
    assert reply.parent.content == "The colour is" and reply.status == Message.Status.COMPLETE


def test_a_developer_message_goes_with_its_role(alice_client, conversation, upstream):
    send(alice_client, conversation, "Answer in haiku.", role="developer")

    (body,) = sent_bodies(upstream)
    assert body["messages"] == [{"role": "developer", "content": "Answer in haiku."}]


def test_a_role_the_model_does_not_take_is_not_offered(alice_client, conversation):
    conversation.model = CLAUDE
    conversation.save()

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert '<option value="assistant"' in page
    assert '<option value="developer"' not in page


def test_editing_a_reply_makes_a_written_sibling_and_sends_nothing(
    alice_client, conversation, upstream
):
    send(alice_client, conversation, "Hi")
    reply = Message.objects.get(role="assistant")
    url = reverse("message_edit", args=[conversation.public_id, reply.public_id])

    response = alice_client.post(
        url, {"edit-content": "Better reply", "edit-idempotency_key": "k1"}
    )

    assert response.status_code == 302
    edited = Message.objects.get(content="Better reply")
    assert edited.role == "assistant" and edited.written and edited.parent_id == reply.parent_id
    assert len(upstream.chat_requests()) == 1
    reply.refresh_from_db()
    assert reply.content  # the original stays
    conversation.refresh_from_db()
    assert conversation.current_leaf == edited


def test_the_raw_body_is_sent_byte_for_byte(alice_client, conversation, upstream):
    raw = (
        '{"model": "demo/echo",  "messages": [{"role":"user","content":"Hi"}], "temperature": 5e-1}'
    )

    send(alice_client, conversation, "", use_raw="on", raw_body=raw)

    (received,) = upstream.chat_requests()
    assert received.body == raw.encode()
    call = ApiCall.objects.get()
    assert call.request_body == raw
    assert Message.objects.get(role="user").raw_body == raw


def test_a_raw_body_ending_in_tool_messages_shows_them(alice_client, conversation, upstream):
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    raw = json.dumps(
        {
            "model": "demo/echo",
            "messages": [
                {"role": "user", "content": "Use f"},
                {"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            ],
        }
    )

    send(alice_client, conversation, "", use_raw="on", raw_body=raw)

    roles = [(m.role, m.content) for m in Message.objects.order_by("created", "id")]
    assert roles[:3] == [("user", "Use f"), ("assistant", ""), ("tool", "42")]
    assert Message.objects.get(role="tool").tool_call_id == "call_1"
    assert Message.objects.get(role="assistant", written=True).tool_calls == calls
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "call_1" in page and "Tool call" in page


def test_a_raw_image_part_is_shown_and_resent_on_the_next_turn(
    alice_client, conversation, upstream
):
    image = png_bytes(6, 6, seed=3)
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    raw = json.dumps(
        {
            "model": "demo/echo",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look"},
                        {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
                    ],
                }
            ],
        }
    )
    send(alice_client, conversation, "", use_raw="on", raw_body=raw)
    send(alice_client, conversation, "And again?")

    _, second = sent_bodies(upstream)
    assert second["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": data_url, "detail": "low"},
    }
    attachment = Attachment.objects.get()
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert reverse("attachment_file", args=[attachment.public_id]) in page


def test_a_raw_body_that_departs_from_the_branch_starts_a_new_one(
    alice_client, conversation, upstream
):
    send(alice_client, conversation, "First")
    raw = json.dumps({"model": "demo/echo", "messages": [{"role": "user", "content": "Other"}]})

    send(alice_client, conversation, "", use_raw="on", raw_body=raw)

    first = Message.objects.get(content="First")
    other = Message.objects.get(content="Other")
    assert other.parent_id is None and first.parent_id is None  # siblings at the root


def test_a_raw_body_with_an_unknown_role_is_an_error_on_the_field(alice_client, conversation):
    raw = json.dumps({"model": "demo/echo", "messages": [{"role": "robot", "content": "x"}]})

    response = send(alice_client, conversation, "", use_raw="on", raw_body=raw)

    assert response.status_code == 400
    assert "messages[0] must be an object whose role is one of" in response.content.decode()


def test_the_inspector_names_the_cut_out_file_and_get_code_reads_it(
    alice_client, conversation, upstream
):
    image = png_bytes(8, 8)
    send_files(alice_client, conversation, files=[upload("cat.png", image)])
    call = ApiCall.objects.get()

    page = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()

    encoded = base64.b64encode(image).decode()
    assert f"&lt;base64 of cat.png: {len(encoded):,} characters; the download has them&gt;" in page
    assert encoded not in page
    assert "cat.png" in page and "b64(" in page  # the Python snippet reads the file


def test_a_raw_body_may_not_name_a_stored_file_by_its_id(alice_client, conversation, upstream):
    part = {"type": "attachment", "attachment": "not-an-id"}
    raw = json.dumps({"model": "demo/echo", "messages": [{"role": "user", "content": [part]}]})

    response = send(alice_client, conversation, "", use_raw="on", raw_body=raw)

    assert response.status_code == 400
    assert "messages[0].content[0]: &quot;attachment&quot; parts are how the app" in (
        response.content.decode()
    )
    assert not upstream.chat_requests()


def test_a_part_naming_another_users_file_shows_nothing_of_it(
    alice_client, conversation, bob, upstream
):
    image = png_bytes(9, 9)
    theirs = attachment_store(
        owner=bob, filename="bobs-secret.png", data=image, sniffed=sniff(image)
    )
    parts = [
        {"type": "attachment", "attachment": str(theirs.public_id)},
        {"type": "attachment", "attachment": "not-an-id"},
    ]
    Message.objects.create(
        conversation=conversation, role="user", content="", parts=parts, written=True
    )
    conversation.current_leaf = Message.objects.get()
    conversation.save()

    page = alice_client.get(conversation.get_absolute_url())

    assert page.status_code == 200
    assert "bobs-secret" not in page.content.decode()
    send(alice_client, conversation, "And?")
    assert "base64" not in upstream.chat_requests()[0].body.decode()
