"""Export format version 2: every field of a message, each file once, exact call bytes.

A conversation made through the real pages against the demo upstream (files, every
role, tool calls, choices, a refusal, log probabilities) goes out and comes back equal;
version 1 files still import; a plain OpenAI request body imports as one conversation;
and a hostile file is refused whole, naming the place.
"""

import base64
import hashlib
import json
import struct
import zlib
from pathlib import Path

import pytest
from django.db import connection
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from chat import exports
from chat.models import ApiCall, Attachment, Conversation, Message
from tests.helpers import PDF_BYTES, png_bytes, send, sent_bodies
from tests.test_export_import import comparable, download, upload
from tests.test_hostile_input import refuse_titles
from tests.test_message_structure import send_files
from tests.test_message_structure import upload as file_upload
from tests.test_tools_and_choices import TOOLS, post_results

pytestmark = pytest.mark.django_db

V1_FIXTURE = Path(__file__).parent / "fixtures" / "export-v1.json"
MESSAGE_FIELDS = (
    "role",
    "status",
    "content",
    "reasoning",
    "tool_calls",
    "tool_call_id",
    "refusal",
    "extra",
    "choice_index",
    "finish_reason",
    "logprobs",
    "written",
    "raw_body",
)
CALL_FIELDS = (*exports.CALL_FIELDS, "cost_estimated", "model")


def noisy_png(size: int, *, seed: int = 1) -> bytes:
    """A real PNG with `size` bytes of incompressible noise in an ancillary chunk."""
    image = png_bytes(5, 4, seed=seed)
    noise = hashlib.shake_256(str(seed).encode()).digest(size)
    chunk = struct.pack(">I", size) + b"zNSE" + noise
    chunk += struct.pack(">I", zlib.crc32(b"zNSE" + noise))
    end = image.rindex(b"IEND") - 4
    return image[:end] + chunk + image[end:]


IMAGE = noisy_png(300_000)
ENCODED_IMAGE = base64.b64encode(IMAGE).decode()


@pytest.fixture
def everything(alice, alice_client, upstream):
    """Alice's conversation with one of each thing a message can carry."""
    conversation = Conversation.objects.create(owner=alice, model="demo/echo", title="All of it")
    send_files(alice_client, conversation, "What is in it?", files=[file_upload("cat.png", IMAGE)])
    for turn in range(3):
        send(alice_client, conversation, f"And now {turn}?")  # each resends the image
    send_files(
        alice_client, conversation, "Read this", files=[file_upload("report.pdf", PDF_BYTES)]
    )
    send(alice_client, conversation, "Answer in haiku.", role="developer", add_only="on")
    send(alice_client, conversation, "2+2?", add_only="on")
    send(alice_client, conversation, "4", role="assistant", add_only="on")
    send(alice_client, conversation, "Weather in Oslo?", extra_params=TOOLS)
    conversation.refresh_from_db()
    post_results(alice_client, conversation, conversation.current_leaf, '{"temp": 21}')
    send(alice_client, conversation, "Two", extra_params='{"n": 2}')
    send(alice_client, conversation, "Please [refuse]")
    send(alice_client, conversation, "Sure?", extra_params='{"logprobs": true, "top_logprobs": 2}')
    conversation.refresh_from_db()
    return conversation


def ordered(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("created", "id"))


def assert_same_messages(original: Conversation, copy: Conversation) -> None:
    """Every field of every message and call equal, files by their content."""
    mine, theirs = ordered(original), ordered(copy)
    assert len(mine) == len(theirs)
    index_of = {message.pk: index for index, message in enumerate(mine)}
    index_of.update({message.pk: index for index, message in enumerate(theirs)})
    sha_of = {str(a.public_id): a.sha256 for a in Attachment.objects.all()}
    for before, after in zip(mine, theirs, strict=True):
        for name in MESSAGE_FIELDS:
            assert getattr(after, name) == getattr(before, name), name
        assert index_of.get(after.parent_id) == index_of.get(before.parent_id)
        assert by_sha(after.parts, sha_of) == by_sha(before.parts, sha_of)
        assert sorted(a.sha256 for a in after.attachments.all()) == sorted(
            a.sha256 for a in before.attachments.all()
        )
        assert all(a.owner_id == copy.owner_id for a in after.attachments.all())
        calls_before, calls_after = list(before.calls.all()), list(after.calls.all())
        assert len(calls_after) == len(calls_before)
        for call_before, call_after in zip(calls_before, calls_after, strict=True):
            for name in CALL_FIELDS:
                assert getattr(call_after, name) == getattr(call_before, name), name
            assert call_after.sent_body().encode() == call_before.sent_body().encode()
    leaf = index_of[copy.current_leaf_id]
    assert leaf == index_of[original.current_leaf_id]


def by_sha(parts, sha_of):
    if parts is None:
        return None
    return [
        {**part, "attachment": sha_of[part["attachment"]]}
        if isinstance(part, dict) and part.get("type") == "attachment"
        else part
        for part in parts
    ]


def test_the_conversation_has_one_of_everything(everything):
    messages = ordered(everything)
    roles = {message.role for message in messages}
    assert roles == {"user", "assistant", "developer", "tool"}
    assert any(m.tool_calls for m in messages) and any(m.refusal for m in messages)
    assert {m.choice_index for m in messages} >= {0, 1}
    assert any(m.logprobs for m in messages)
    assert any(m.written and m.role == "assistant" for m in messages)
    image_calls = [call for call in ApiCall.objects.all() if call.request_splices]
    assert len(image_calls) >= 4  # turn 1 and three resends, at least
    assert Attachment.objects.count() == 2


def test_export_then_import_gives_back_every_field_and_the_exact_bytes_sent(
    alice_client, bob_client, bob, everything, upstream
):
    data = download(alice_client, "conversation_export_json", everything.public_id)

    response = upload(bob_client, data)

    assert response.status_code == 302
    copy = Conversation.objects.get(owner=bob)
    assert_same_messages(everything, copy)
    # The bytes the demo upstream received, rebuilt from the copy.
    received = {request.body for request in upstream.chat_requests()}
    assert {call.sent_body().encode() for call in copy.calls.all()} <= received
    [original] = json.loads(data)["conversations"]
    again = json.loads(download(bob_client, "conversation_export_json", copy.public_id))
    assert comparable(again["conversations"][0]) == comparable(original)
    assert again["attachments"] == json.loads(data)["attachments"]


def test_each_file_is_in_the_export_once_however_many_calls_sent_it(alice_client, everything):
    data = download(alice_client, "conversation_export_json", everything.public_id).decode()

    document = json.loads(data)
    assert data.count(ENCODED_IMAGE) == 1
    assert len(data) < 2 * len(ENCODED_IMAGE)  # inlined in each call it would be 10 times
    sha = hashlib.sha256(IMAGE).hexdigest()
    assert document["attachments"][sha] == {
        "media_type": "image/png",
        "filename": "cat.png",
        "size": len(IMAGE),
        "width": 5,
        "height": 4,
        "data": ENCODED_IMAGE,
    }
    [conversation] = document["conversations"]
    first = conversation["messages"][0]
    assert first["parts"][1] == {"type": "attachment", "attachment": sha}
    assert first["attachments"] == [sha]
    splices = [
        splice
        for message in conversation["messages"]
        for call in message["calls"]
        for splice in call["request_splices"]
    ]
    assert len(splices) >= 4 and {splice["attachment"] for splice in splices} >= {sha}


def test_importing_stores_each_file_once_and_again_adds_none(
    alice, alice_client, bob_client, bob, everything
):
    data = download(alice_client, "conversation_export_json", everything.public_id)

    upload(bob_client, data)
    upload(bob_client, data)
    upload(alice_client, data)  # alice has them already

    assert Attachment.objects.filter(owner=bob).count() == 2
    assert Attachment.objects.filter(owner=alice).count() == 2
    assert Conversation.objects.filter(owner=bob).count() == 2


def test_the_imported_copy_shows_its_own_thumbnail_and_sends_the_image_again(
    alice_client, bob_client, bob, everything, upstream
):
    upload(bob_client, download(alice_client, "conversation_export_json", everything.public_id))
    copy = Conversation.objects.get(owner=bob)
    image = Attachment.objects.get(owner=bob, media_type="image/png")

    page = bob_client.get(copy.get_absolute_url() + "?all=1").content.decode()
    assert reverse("attachment_file", args=[image.public_id]) in page
    upstream.clear()
    send(bob_client, copy, "Once more?")

    (body,) = sent_bodies(upstream)
    assert ENCODED_IMAGE in json.dumps(body)


def test_exporting_everything_writes_a_file_shared_by_two_conversations_once(
    alice, alice_client, bob_client, bob
):
    image = png_bytes(3, 3, seed=9)
    for title in ("One", "Two"):
        conversation = Conversation.objects.create(owner=alice, model="demo/echo", title=title)
        send_files(alice_client, conversation, files=[file_upload("same.png", image)])

    data = download(alice_client, "conversations_export")
    upload(bob_client, data)

    assert data.decode().count(base64.b64encode(image).decode()) == 1
    assert Conversation.objects.filter(owner=bob).count() == 2
    assert Attachment.objects.filter(owner=bob).count() == 1


def test_the_markdown_export_lists_files_tool_calls_results_and_the_refusal(
    alice_client, everything
):
    text = download(alice_client, "conversation_export_md", everything.public_id).decode()

    assert f"- Image: cat.png (image/png, {filesizeformat(len(IMAGE))}, 5×4)" in text
    assert "- File: report.pdf (application/pdf" in text
    assert "## Developer (written)" not in text and "## Developer\n\nAnswer in haiku." in text
    assert "## Assistant (written)\n\n4" in text
    call = Message.objects.filter(tool_calls__isnull=False).first().tool_calls[0]
    assert f"**Tool call** `get_weather` (id `{call['id']}`):" in text
    assert f'## Tool\n\nResult of tool call `{call["id"]}`:\n\n{{"temp": 21}}' in text
    assert "**Refusal** (the model declined):\n\n> " in text
    assert "## Assistant (choice 1)" in text
    assert ENCODED_IMAGE[:100] not in text


# --- Version 1 -----------------------------------------------------------------


def test_a_version_1_file_written_before_version_2_still_imports(bob_client, bob):
    data = V1_FIXTURE.read_bytes()
    assert json.loads(data)["version"] == 1

    response = upload(bob_client, data)

    assert response.status_code == 302
    copy = Conversation.objects.get(owner=bob)
    [document] = json.loads(data)["conversations"]
    assert copy.title == document["title"] and copy.model == document["model"]
    messages = ordered(copy)
    assert [(m.role, m.content, m.status) for m in messages] == [
        (m["role"], m["content"], m["status"]) for m in document["messages"]
    ]
    # A version 1 user message was written by the user; its replies were not.
    assert [m.written for m in messages] == [m.role == "user" for m in messages]
    calls = [c for m in document["messages"] for c in m["calls"]]
    assert [c.request_body for c in copy.calls.order_by("created", "id")] == [
        c["request_body"] for c in calls
    ]
    assert bob_client.get(copy.get_absolute_url()).status_code == 200
    again = json.loads(download(bob_client, "conversation_export_json", copy.public_id))
    assert again["version"] == 2 and again["attachments"] == {}


# --- A plain OpenAI request body -------------------------------------------------


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def test_a_plain_openai_request_imports_as_one_conversation(bob_client, bob, upstream):
    image = png_bytes(6, 5, seed=4)
    body = {
        "model": "openai/gpt-4o",
        "temperature": 0.2,
        "max_tokens": 100,
        "top_k": 5,
        "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": data_url(image), "detail": "low"}},
                ],
            },
            {"role": "assistant", "content": "A grey square.", "name": "helper"},
            {"role": "user", "content": "Sure?"},
        ],
    }

    response = upload(bob_client, json.dumps(body).encode(), name="request.json")

    copy = Conversation.objects.get(owner=bob)
    assert response.status_code == 302 and response.url == copy.get_absolute_url()
    assert (copy.model, copy.system_prompt, copy.temperature, copy.max_tokens) == (
        "openai/gpt-4o",
        "Be brief.",
        0.2,
        100,
    )
    assert copy.extra_params == {"top_k": 5}
    assert copy.title == "What is this?"
    first, reply, last = ordered(copy)
    attachment = Attachment.objects.get(owner=bob)
    assert bytes(attachment.data) == image and (attachment.width, attachment.height) == (6, 5)
    assert first.parts == [
        {"type": "text", "text": "What is this?"},
        {"type": "attachment", "attachment": str(attachment.public_id), "detail": "low"},
    ]
    assert list(first.attachments.all()) == [attachment]
    assert (reply.role, reply.content, reply.extra, reply.written) == (
        "assistant",
        "A grey square.",
        {"name": "helper"},
        True,
    )
    assert (last.parent, reply.parent, copy.current_leaf) == (reply, first, last)
    assert not upstream.chat_requests()  # nothing generated
    page = bob_client.get(copy.get_absolute_url()).content.decode()
    assert reverse("attachment_file", args=[attachment.public_id]) in page


def test_a_plain_request_without_a_model_gets_the_default_one(bob_client, bob, settings):
    body = {"messages": [{"role": "user", "content": "Hi"}]}

    upload(bob_client, json.dumps(body).encode())

    copy = Conversation.objects.get(owner=bob)
    assert copy.model == settings.DEFAULT_MODEL and copy.system_prompt == ""
    assert [(m.role, m.content) for m in ordered(copy)] == [("user", "Hi")]


PLAIN_REFUSED = {
    "no messages": ({"messages": []}, "messages: the file has no messages."),
    "an unknown role": (
        {"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}]},
        "messages[1].role: must be one of system, developer, user, assistant, tool",
    ),
    "content that is a number": (
        {"messages": [{"role": "user", "content": 5}]},
        "messages[0].content: must be a string, a list of parts or null.",
    ),
    "our own file reference": (
        {"messages": [{"role": "user", "content": [{"type": "attachment", "attachment": "x"}]}]},
        'messages[0].content[0]: an "attachment" part names a stored file',
    ),
    "10,000 parts": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 10_000}]},
        "messages[0].content: 10,000 parts; at most 1,000 per message.",
    ),
    "a model that is not text": (
        {"model": 4, "messages": [{"role": "user", "content": "x"}]},
        "model: must be a string, not a number.",
    ),
    "too many choices": (
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 99},
        'file: "n" asks for 99 replies in one call; this server allows at most 8.',
    ),
    "too many stop sequences": (
        {"model": "m", "stop": ["a"] * 9, "messages": [{"role": "user", "content": "x"}]},
        "stop: At most 4 stop sequences; you gave 9.",
    ),
    "tool calls that are not a list": (
        {"messages": [{"role": "assistant", "content": None, "tool_calls": {"id": 1}}]},
        "messages[0].tool_calls: must be a JSON array, not an object.",
    ),
}


@pytest.mark.parametrize("body, problem", PLAIN_REFUSED.values(), ids=PLAIN_REFUSED.keys())
def test_a_bad_plain_request_is_refused_naming_the_place(bob_client, body, problem):
    response = upload(bob_client, json.dumps(body).encode())

    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was imported." in page
    assert problem.replace('"', "&quot;") in page
    assert not Conversation.objects.exists() and not Attachment.objects.exists()


def refuse_messages(content: str) -> str:
    """SQL for a trigger that makes the database refuse a message with `content`."""
    if connection.vendor == "sqlite":
        return (
            "CREATE TRIGGER refuse_message BEFORE INSERT ON chat_message "
            f"WHEN NEW.content = '{content}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    return (
        "CREATE FUNCTION refuse_message() RETURNS trigger AS $$ BEGIN "
        f"IF NEW.content = '{content}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; "
        "END $$ LANGUAGE plpgsql; CREATE TRIGGER refuse_message BEFORE INSERT ON chat_message "
        "FOR EACH ROW EXECUTE FUNCTION refuse_message()"
    )


def test_a_plain_request_that_the_database_refuses_keeps_nothing_not_even_its_files(
    bob_client, bob
):
    image = {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look"}, image]},
            {"role": "user", "content": "refused"},
        ]
    }
    with connection.cursor() as cursor:
        cursor.execute(refuse_messages("refused"))

    response = upload(bob_client, json.dumps(body).encode())

    assert response.status_code == 400
    assert "Nothing was imported." in response.content.decode()
    assert not Conversation.objects.exists() and not Attachment.objects.exists()
    assert not Message.objects.exists()


# --- Hostile version 2 files -------------------------------------------------------

SMALL = png_bytes(2, 2, seed=5)
SHA = hashlib.sha256(SMALL).hexdigest()
BODY = '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}]}]}'
SPLICE_AT = BODY.index("base64,") + len("base64,")


def v2_file() -> dict:
    return {
        "format": "playground.conversations",
        "version": 2,
        "attachments": {
            SHA: {
                "media_type": "image/png",
                "filename": "small.png",
                "size": len(SMALL),
                "width": 2,
                "height": 2,
                "data": base64.b64encode(SMALL).decode(),
            }
        },
        "conversations": [
            {
                "model": "demo/echo",
                "messages": [
                    {
                        "id": "a",
                        "role": "user",
                        "content": "Look",
                        "parts": [
                            {"type": "text", "text": "Look"},
                            {"type": "attachment", "attachment": SHA},
                        ],
                        "attachments": [SHA],
                        "written": True,
                    },
                    {
                        "id": "b",
                        "parent": "a",
                        "role": "assistant",
                        "content": "A square",
                        "calls": [
                            {
                                "request_body": BODY,
                                "request_splices": [{"at": SPLICE_AT, "attachment": SHA}],
                                "http_status": 200,
                            }
                        ],
                    },
                ],
            }
        ],
    }


def test_a_hand_written_version_2_file_imports_with_its_file(bob_client, bob):
    response = upload(bob_client, json.dumps(v2_file()).encode())

    assert response.status_code == 302
    attachment = Attachment.objects.get(owner=bob)
    assert (attachment.sha256, attachment.filename, attachment.size) == (
        SHA,
        "small.png",
        len(SMALL),
    )
    question, reply = ordered(Conversation.objects.get(owner=bob))
    assert question.parts[1] == {"type": "attachment", "attachment": str(attachment.public_id)}
    call = reply.calls.get()
    assert call.request_splices == [{"at": SPLICE_AT, "attachment": str(attachment.public_id)}]
    assert json.loads(call.sent_body())["messages"][0]["content"][0]["image_url"]["url"] == (
        data_url(SMALL)
    )


def changed(change) -> bytes:
    document = v2_file()
    change(document)
    return json.dumps(document).encode()


def entry(document: dict) -> dict:
    return document["attachments"][SHA]


def first(document: dict) -> dict:
    return document["conversations"][0]["messages"][0]


def call_of(document: dict) -> dict:
    return document["conversations"][0]["messages"][1]["calls"][0]


def nested(depth: int):
    def change(document: dict) -> None:
        first(document)["parts"][0] = {"type": "text", "text": "x", "deep": 0}

    text = changed(change).decode()
    return text.replace('"deep": 0', '"deep": ' + "[" * depth + "]" * depth).encode()


def retyped(document: dict) -> None:
    svg = b"<svg onload=alert(1)>"
    sha = hashlib.sha256(svg).hexdigest()
    document["attachments"] = {sha: {**entry(document), "data": base64.b64encode(svg).decode()}}
    first(document)["parts"][1]["attachment"] = sha
    first(document)["attachments"] = [sha]
    call_of(document)["request_splices"][0]["attachment"] = sha


V2_REFUSED = {
    "bad base64": (
        changed(lambda d: entry(d).update(data="not base64!")),
        f"attachments.{SHA}.data: not valid base64.",
    ),
    "a file of another type": (
        changed(retyped),
        ".data: not a PNG, JPEG, WebP, GIF or PDF file.",
    ),
    "a media type the bytes are not": (
        changed(lambda d: entry(d).update(media_type="application/pdf")),
        f"attachments.{SHA}.media_type: the bytes are image/png, not 'application/pdf'.",
    ),
    "bytes that are not the key's": (
        changed(lambda d: entry(d).update(data=base64.b64encode(png_bytes(3, 3)).decode())),
        f"attachments.{SHA}.data: the bytes' SHA-256 is",
    ),
    "a key that is no SHA-256": (
        changed(lambda d: d.update(attachments={"../../etc": entry(d)})),
        "attachments: the key '../../etc' is not a SHA-256",
    ),
    "a size the bytes are not": (
        changed(lambda d: entry(d).update(size=5)),
        f"attachments.{SHA}.size: the bytes say {len(SMALL)}, not 5.",
    ),
    "an entry without its bytes": (
        changed(lambda d: entry(d).pop("data")),
        f'attachments.{SHA}: the field "data" is missing.',
    ),
    "too many files": (
        changed(lambda d: d.update(attachments={f"{n:064x}": {} for n in range(1_001)})),
        "attachments: 1,001 files; at most 1,000 per file.",
    ),
    "a part naming an unknown file": (
        changed(lambda d: first(d)["parts"][1].update(attachment="f" * 64)),
        "conversations[0].messages[0].parts[1].attachment: 'ffff",
    ),
    "a part naming a file by its old id": (
        changed(lambda d: first(d)["parts"][1].update(attachment=42)),
        "messages[0].parts[1].attachment: a number is not the key of a file",
    ),
    "a message naming an unknown file": (
        changed(lambda d: first(d).update(attachments=["e" * 64])),
        "conversations[0].messages[0].attachments[0]: 'eeee",
    ),
    "a splice naming an unknown file": (
        changed(lambda d: call_of(d)["request_splices"][0].update(attachment="d" * 64)),
        "messages[1].calls[0].request_splices[0].attachment: 'dddd",
    ),
    "a splice past the body's end": (
        changed(lambda d: call_of(d)["request_splices"][0].update(at=len(BODY) + 1)),
        f"request_splices[0].at: must be a whole number after the previous offset (-1) and at "
        f"most the body's length ({len(BODY)} characters), not {len(BODY) + 1}.",
    ),
    "a negative splice": (
        changed(lambda d: call_of(d)["request_splices"][0].update(at=-3)),
        "request_splices[0].at: must be a whole number after",
    ),
    "splices out of order": (
        changed(
            lambda d: call_of(d)["request_splices"].insert(
                0, {"at": SPLICE_AT + 5, "attachment": SHA}
            )
        ),
        f"request_splices[1].at: must be a whole number after the previous offset ({SPLICE_AT + 5})",
    ),
    "a splice offset that is text": (
        changed(lambda d: call_of(d)["request_splices"][0].update(at="5")),
        "request_splices[0].at: must be a whole number",
    ),
    "10,000 parts": (
        changed(lambda d: first(d).update(parts=[{"type": "text", "text": "x"}] * 10_000)),
        "conversations[0].messages[0].parts: 10,000 parts; at most 1,000 per message.",
    ),
    "parts nested too deep": (nested(100), "nests deeper than 64 levels"),
    "parts nested deeper than Python's parser": (nested(100_000), "nests deeper"),
    "parts that are not a list": (
        changed(lambda d: first(d).update(parts="Look")),
        "messages[0].parts: must be a JSON array, not a string.",
    ),
    "an attachment part with other keys": (
        changed(lambda d: first(d)["parts"][1].update(url="http://x")),
        'messages[0].parts[1]: unknown field "url"',
    ),
    "tool calls that are not a list": (
        changed(lambda d: first(d).update(tool_calls={"id": "x"})),
        "messages[0].tool_calls: must be a JSON array, not an object.",
    ),
    "extra keys that have their own field": (
        changed(lambda d: first(d).update(extra={"tool_calls": []})),
        "messages[0].extra: &quot;tool_calls&quot; has its own field",
    ),
    "written that is not true or false": (
        changed(lambda d: first(d).update(written="yes")),
        "messages[0].written: must be true or false, not a string.",
    ),
    "a negative choice index": (
        changed(lambda d: first(d).update(choice_index=-1)),
        "messages[0].choice_index: must be a whole number from 0 to 32,767, or null.",
    ),
    "logprobs that are text": (
        changed(lambda d: first(d).update(logprobs="high")),
        "messages[0].logprobs: must be a JSON object, not a string.",
    ),
    "a raw body over the limit": (
        changed(lambda d: first(d).update(raw_body="x" * 600_000)),
        "messages[0].raw_body: larger than 524,288 bytes.",
    ),
    "an unknown field on a call": (
        changed(lambda d: call_of(d).update(request_attachments=[])),
        'calls[0]: unknown field "request_attachments"',
    ),
    "calls on a tool message": (
        changed(lambda d: first(d).update(role="tool", calls=[call_of(d)])),
        "messages[0].calls: only assistant messages have calls.",
    ),
}


@pytest.mark.parametrize("data, problem", V2_REFUSED.values(), ids=V2_REFUSED.keys())
def test_a_hostile_version_2_file_is_refused_whole_naming_the_place(bob_client, data, problem):
    response = upload(bob_client, data)

    page = response.content.decode()
    assert response.status_code == 400
    assert "Nothing was imported." in page
    assert problem.replace("'", "&#x27;").replace('"', "&quot;") in page
    assert not Conversation.objects.exists() and not Message.objects.exists()
    assert not ApiCall.objects.exists() and not Attachment.objects.exists()


def test_a_file_over_the_attachment_limit_is_refused_before_it_is_decoded(bob_client, settings):
    settings.MAX_ATTACHMENT_BYTES = 40

    response = upload(bob_client, json.dumps(v2_file()).encode())

    assert response.status_code == 400
    assert f"attachments.{SHA}.data: the file is larger than 40 bytes." in (
        response.content.decode()
    )
    assert not Attachment.objects.exists()


def test_an_import_whose_write_fails_midway_keeps_none_of_its_files(bob_client, bob):
    document = v2_file()
    document["conversations"].append({**document["conversations"][0], "title": "refused"})
    with connection.cursor() as cursor:
        cursor.execute(refuse_titles("refused"))

    response = upload(bob_client, json.dumps(document).encode())

    assert response.status_code == 400
    assert "The database refused to store a conversation" in response.content.decode()
    assert not Conversation.objects.exists() and not Attachment.objects.exists()


def test_a_failed_import_leaves_a_file_the_owner_had_before(bob_client, bob):
    from chat.attachments import attachment_store, sniff

    attachment_store(owner=bob, filename="mine.png", data=SMALL, sniffed=sniff(SMALL))
    document = v2_file()
    document["conversations"][0]["title"] = "refused"
    with connection.cursor() as cursor:
        cursor.execute(refuse_titles("refused"))

    upload(bob_client, json.dumps(document).encode())

    assert Attachment.objects.get(owner=bob).filename == "mine.png"


def test_a_file_nothing_references_is_checked_but_not_stored(bob_client, bob):
    document = v2_file()
    first(document)["parts"] = None
    first(document)["attachments"] = []
    call_of(document)["request_splices"] = []

    response = upload(bob_client, json.dumps(document).encode())

    assert response.status_code == 302
    assert not Attachment.objects.exists()
